"""A deterministic, campaign-shaped people directory for tests, benchmarks and `make demo`.

The real campaign: about 9,000 people in 332 offices, of whom 3,592 are selected by the plan
filter `(&(|(employeeType=mando medio)(employeeType=vocal))(mail=*))`. `generate_people` builds
that shape for any size from a seed, and (when `hostile`) mixes in a handful of entries per
awkward case a real directory holds, so callers can check what happens to each one.

Each `PersonSpec` says whether the default filter selects it (`selected`) and which hostile
cases it belongs to (`cases`); `case_index` turns that into sets of uids per case. The
generator only describes the data: deciding that "a@@b" is unusable is the classifier's job.
"""

from __future__ import annotations

import base64
import functools
import random
import re
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_BASE = "dc=ife,dc=org,dc=mx"
PEOPLE_RDN = "ou=people"
MAIL_DOMAIN = "ife.org.mx"
DEFAULT_FILTER = "(&(|(employeeType=mando medio)(employeeType=vocal))(mail=*))"
POPULATION_FILTER = "(|(objectClass=person)(objectClass=inetOrgPerson))"
# the attributes every generated person may carry, in the casing the schema uses
PERSON_ATTRIBUTES = ("uid", "cn", "sn", "givenName", "mail", "employeeType", "ou")

IN_SCOPE_TYPES = ("mando medio", "vocal")
OTHER_TYPES = ("operativo", "honorarios", "eventual", "prestador de servicios")

# Hostile cases. Each names a handful of people; PersonSpec.cases lists the ones a person is in.
CASE_UPPER_MAIL = "upper_mail"  # mail in capitals: JOSE.NUNEZ@IFE.ORG.MX (selected)
CASE_MULTI_MAIL = "multi_mail"  # several mail values: first is primary, others aliases (selected)
CASE_NO_MAIL = "no_mail"  # in-scope employeeType but no mail at all (not selected)
CASE_SHARED_MAIL = "shared_mail"  # two distinct people with one address, maybe differing in case
CASE_UNSAFE_UID = "unsafe_uid"  # uid with ../, *, )(, control characters (selected)
CASE_SLASH_UID = "slash_uid"  # uid containing a slash (selected)
CASE_LONG_VALUES = "long_values"  # cn/sn of 2,000 characters (selected)
CASE_BAD_MAIL = "bad_mail"  # mail that is no address: "not-an-address", "a@@b" (selected)
CASE_TYPE_CASE = (
    "employee_type_case"  # "Mando Medio"/"VOCAL": LDAP matching ignores case (selected)
)
CASE_NO_OU = "no_ou_attribute"  # no ou attribute; the office is only in the DN (selected)
CASE_NON_ASCII_UID = "non_ascii_uid"  # uid with accents, e.g. "josé.núñez" (selected)

HOSTILE_CASES = (
    CASE_UPPER_MAIL,
    CASE_MULTI_MAIL,
    CASE_NO_MAIL,
    CASE_SHARED_MAIL,
    CASE_UNSAFE_UID,
    CASE_SLASH_UID,
    CASE_LONG_VALUES,
    CASE_BAD_MAIL,
    CASE_TYPE_CASE,
    CASE_NO_OU,
    CASE_NON_ASCII_UID,
)

LONG_VALUE_LENGTH = 2000

# fmt: off
_GIVEN_NAMES = (
    "José", "María", "Juan", "Guadalupe", "Francisco", "Ana", "Jesús", "Verónica", "Luis",
    "Rocío", "Ramón", "Inés", "Andrés", "Sofía", "Óscar", "Mónica", "Raúl", "Begoña", "Héctor",
    "Lucía", "Joaquín", "Ángel", "Ximena", "Martín", "Rubén", "Concepción", "Tomás", "Araceli",
    "Julián", "Belén", "Nicolás", "Dolores", "Efraín", "Noemí", "Germán", "Leticia", "Iñigo",
    "Patricia", "Agustín", "Érika",
)
_SURNAMES = (
    "Núñez", "Peña", "Hernández", "García", "Martínez", "López", "González", "Pérez",
    "Rodríguez", "Sánchez", "Ramírez", "Cruz", "Flores", "Gómez", "Díaz", "Vázquez", "Jiménez",
    "Álvarez", "Muñoz", "Ibáñez", "Castañeda", "Ordóñez", "Gutiérrez", "Chávez", "Domínguez",
    "Suárez", "Beltrán", "Ortiz", "Mendoza", "Aguilar", "Ríos", "Cortés", "Quiñones", "Báez",
    "Montaño", "Villaseñor", "Zúñiga", "Espinoza", "Carreño", "Solís",
)
# fmt: on


@dataclass(frozen=True)
class PersonSpec:
    """One generated person and what a correct reading of the directory should see."""

    uid: str
    cn: str
    sn: str
    given_name: str
    mails: tuple[str, ...]  # in directory order: the first is the primary address
    employee_type: str | None
    office: str  # the ou the entry lives under (ou=<office>,ou=people,<base>)
    has_ou_attribute: bool = True  # False: the `ou` attribute is absent, only the DN names it
    selected: bool = False  # does DEFAULT_FILTER select this entry?
    cases: tuple[str, ...] = ()  # hostile cases this person belongs to

    def dn(self, base_dn: str = DEFAULT_BASE) -> str:
        return (
            f"uid={escape_dn_value(self.uid)},"
            f"ou={escape_dn_value(self.office)},{PEOPLE_RDN},{base_dn}"
        )

    @property
    def primary_mail(self) -> str | None:
        return self.mails[0] if self.mails else None

    def attributes(self) -> dict[str, list[str]]:
        """The entry's attributes as they are written to the directory (objectClass included)."""
        attrs: dict[str, list[str]] = {
            "objectClass": ["top", "person", "organizationalPerson", "inetOrgPerson"],
            "uid": [self.uid],
            "cn": [self.cn],
            "sn": [self.sn],
            "givenName": [self.given_name],
        }
        if self.mails:
            attrs["mail"] = list(self.mails)
        if self.employee_type is not None:
            attrs["employeeType"] = [self.employee_type]
        if self.has_ou_attribute:
            attrs["ou"] = [self.office]
        return attrs


@dataclass
class _Builder:
    """Keeps uids unique and hands out offices round-robin while people are generated."""

    rng: random.Random
    offices: list[str]
    used_uids: set[str] = field(default_factory=set)
    next_suffix: dict[str, int] = field(default_factory=dict)  # keeps uniquifying O(1)
    next_office: int = 0

    def office(self) -> str:
        name = self.offices[self.next_office % len(self.offices)]
        self.next_office += 1
        return name

    def name(self) -> tuple[str, str, str]:
        given = self.rng.choice(_GIVEN_NAMES)
        sn = f"{self.rng.choice(_SURNAMES)} {self.rng.choice(_SURNAMES)}"
        return given, sn, f"{given} {sn}"

    def unique_uid(self, wanted: str) -> str:
        uid, n = wanted, self.next_suffix.get(wanted.lower(), 1)
        while uid.lower() in self.used_uids:  # uid matching is case-insensitive in LDAP
            n += 1
            uid = f"{wanted}{n}"
        self.next_suffix[wanted.lower()] = n
        self.used_uids.add(uid.lower())
        return uid

    def person(
        self,
        *,
        employee_type: str | None,
        with_mail: bool = True,
        uid: str | None = None,
        mails: Sequence[str] | None = None,
        cases: tuple[str, ...] = (),
        **overrides: object,
    ) -> PersonSpec:
        given, sn, cn = self.name()
        if uid is None:
            first_surname = sn.split(" ")[0]
            uid = self.unique_uid(f"{_ascii_fold(given)}.{_ascii_fold(first_surname)}")
        else:
            uid = self.unique_uid(uid)
        if mails is None:
            local = uid.lower() if uid.isascii() else _ascii_fold(uid)
            mails = (f"{local}@{MAIL_DOMAIN}",) if with_mail else ()
        values: dict[str, object] = {
            "uid": uid,
            "cn": cn,
            "sn": sn,
            "given_name": given,
            "mails": tuple(mails),
            "employee_type": employee_type,
            "office": self.office(),
            "cases": cases,
        }
        values.update(overrides)
        values["selected"] = filter_selects(values["employee_type"], values["mails"])  # type: ignore[arg-type]
        return PersonSpec(**values)  # type: ignore[arg-type]


def generate_people(
    total: int, *, in_scope: int, offices: int, seed: int = 1, hostile: bool = True
) -> list[PersonSpec]:
    """`total` people in `offices` offices, exactly `in_scope` of them selected by DEFAULT_FILTER.

    Selected people include the hostile ones the filter selects (e.g. a bad mail value is still
    a mail value). Same arguments, same list: the order and every value depend only on `seed`.
    """
    if total < 0 or in_scope < 0 or offices < 1:
        raise ValueError("total and in_scope must be >= 0 and offices >= 1")
    if in_scope > total:
        raise ValueError(f"in_scope ({in_scope}) cannot exceed total ({total})")
    rng = random.Random(seed)
    builder = _Builder(rng=rng, offices=office_names(offices))
    special = _hostile_people(builder) if hostile else []
    special_selected = sum(1 for p in special if p.selected)
    regular_selected = in_scope - special_selected
    regular_other = total - len(special) - regular_selected
    if regular_selected < 0 or regular_other < 0:
        raise ValueError(
            f"total={total}, in_scope={in_scope} is too small for the hostile cases "
            f"({len(special)} people, {special_selected} selected); pass hostile=False"
        )
    people = list(special)
    for _ in range(regular_selected):
        people.append(builder.person(employee_type=rng.choice(IN_SCOPE_TYPES)))
    for i in range(regular_other):
        # a few people carry no employeeType at all, as in any real directory
        employee_type = None if i % 97 == 0 else rng.choice(OTHER_TYPES)
        people.append(builder.person(employee_type=employee_type, with_mail=i % 11 != 0))
    rng.shuffle(people)
    return people


def office_names(count: int) -> list[str]:
    return [f"Office{n:03d}" for n in range(1, count + 1)]


def case_index(people: Iterable[PersonSpec]) -> dict[str, set[str]]:
    """Hostile case -> uids of the people in it (every case present, maybe empty)."""
    index: dict[str, set[str]] = {case: set() for case in HOSTILE_CASES}
    for person in people:
        for case in person.cases:
            index[case].add(person.uid)
    return index


def shared_mail_groups(people: Iterable[PersonSpec]) -> dict[str, set[str]]:
    """Lower-cased address -> uids of the people whose mail values include it (2+ people only)."""
    holders: dict[str, set[str]] = {}
    for person in people:
        for mail in {m.lower() for m in person.mails}:
            holders.setdefault(mail, set()).add(person.uid)
    return {mail: uids for mail, uids in holders.items() if len(uids) > 1}


def selected_uids(people: Iterable[PersonSpec]) -> set[str]:
    return {p.uid for p in people if p.selected}


def _hostile_people(b: _Builder) -> list[PersonSpec]:
    people: list[PersonSpec] = []
    add = people.append
    mando, vocal = IN_SCOPE_TYPES

    for uid in ("jose.nunez.mayus", "maria.pena.mayus", "ruben.solis.mayus"):
        add(
            b.person(
                employee_type=mando,
                uid=uid,
                mails=(f"{uid.upper()}@{MAIL_DOMAIN.upper()}",),
                cases=(CASE_UPPER_MAIL,),
            )
        )
    for n, uid in enumerate(("lucia.rios.multi", "angel.baez.multi", "ines.zuniga.multi"), 1):
        mails = [f"{uid}@{MAIL_DOMAIN}", f"{uid}.alias@{MAIL_DOMAIN}"]
        if n == 3:
            mails.append(f"{uid}.otro@{MAIL_DOMAIN}")
        add(b.person(employee_type=vocal, uid=uid, mails=mails, cases=(CASE_MULTI_MAIL,)))
    for n in range(4):
        add(
            b.person(
                employee_type=IN_SCOPE_TYPES[n % 2],
                with_mail=False,
                uid=f"sin.correo{n + 1}",
                cases=(CASE_NO_MAIL,),
            )
        )
    # two pairs share an address; the second pair writes it in different case. Hostile
    # addresses have three dotted parts so they never meet a regular "given.surname[N]" one.
    for uid in ("juan.perez.a", "juan.perez.b"):
        add(
            b.person(
                employee_type=mando,
                uid=uid,
                mails=(f"juan.perez.comun@{MAIL_DOMAIN}",),
                cases=(CASE_SHARED_MAIL,),
            )
        )
    for uid, mail in (("ana.cruz.a", "ana.cruz.comun"), ("ana.cruz.b", "Ana.Cruz.Comun")):
        add(
            b.person(
                employee_type=vocal,
                uid=uid,
                mails=(f"{mail}@{MAIL_DOMAIN}",),
                cases=(CASE_SHARED_MAIL,),
            )
        )
    unsafe = (
        "../../etc/passwd",
        "star*",
        "close)(uid=*",
        "tab\there",
        "bell\x07ring",
        "esc\x1b[31mred",
        "line\nbreak",
    )
    for n, uid in enumerate(unsafe, 1):
        add(
            b.person(
                employee_type=mando,
                uid=uid,
                mails=(f"unsafe{n}@{MAIL_DOMAIN}",),
                cases=(CASE_UNSAFE_UID,),
            )
        )
    for n, uid in enumerate(("jose/nunez", "a/b/c"), 1):
        add(
            b.person(
                employee_type=vocal,
                uid=uid,
                mails=(f"slash{n}@{MAIL_DOMAIN}",),
                cases=(CASE_SLASH_UID,),
            )
        )
    for n in range(2):
        long_cn = ("Nombre Larguísimo " * 200)[:LONG_VALUE_LENGTH]
        long_sn = ("Apellido Ñandú " * 200)[:LONG_VALUE_LENGTH]
        add(
            b.person(
                employee_type=mando,
                uid=f"largo{n + 1}",
                cn=long_cn,
                sn=long_sn,
                cases=(CASE_LONG_VALUES,),
            )
        )
    for n, mail in enumerate(
        ("not-an-address", "a@@b", f"@{MAIL_DOMAIN}", "jose.nunez@", f"jose nunez@{MAIL_DOMAIN}"), 1
    ):
        add(
            b.person(
                employee_type=vocal, uid=f"correo.malo{n}", mails=(mail,), cases=(CASE_BAD_MAIL,)
            )
        )
    for n, etype in enumerate(("Mando Medio", "VOCAL"), 1):
        add(b.person(employee_type=etype, uid=f"tipo.mayus{n}", cases=(CASE_TYPE_CASE,)))
    for n in range(2):
        add(
            b.person(
                employee_type=mando,
                uid=f"sin.ou{n + 1}",
                has_ou_attribute=False,
                cases=(CASE_NO_OU,),
            )
        )
    for n, uid in enumerate(("josé.núñez", "maría.peña"), 1):
        add(
            b.person(
                employee_type=vocal,
                uid=uid,
                mails=(f"acentos{n}@{MAIL_DOMAIN}",),
                cases=(CASE_NON_ASCII_UID,),
            )
        )
    return people


def filter_selects(employee_type: str | None, mails: Sequence[str]) -> bool:
    """Would DEFAULT_FILTER select this person? employeeType equality ignores case in LDAP."""
    return (employee_type or "").lower() in IN_SCOPE_TYPES and bool(mails)


@functools.lru_cache(maxsize=4096)
def _ascii_fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).lower().replace(" ", ".")


# ---- DN and LDIF writing ------------------------------------------------------------------

_DN_SPECIALS = set(',+"\\<>;=')


def escape_dn_value(value: str) -> str:
    """Escape an attribute value for use in a DN (RFC 4514); control characters as \\XX."""
    out: list[str] = []
    for i, ch in enumerate(value):
        if ch in _DN_SPECIALS or (i == 0 and ch in "# ") or (i == len(value) - 1 and ch == " "):
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\{ord(ch):02X}")
        else:
            out.append(ch)
    return "".join(out)


def ldif_entries(
    base_dn: str, people: Iterable[PersonSpec]
) -> Iterator[tuple[str, dict[str, list[str]]]]:
    """(dn, attributes) for the whole tree: base, ou=people, each office, then the people.

    Parents always come before children, as ldapadd and slapadd need.
    """
    people = list(people)
    top_rdn = base_dn.split(",", 1)[0]
    top_attr, top_value = top_rdn.split("=", 1)
    if top_attr.lower() == "dc":
        yield (
            base_dn,
            {
                "objectClass": ["top", "dcObject", "organization"],
                "dc": [top_value],
                "o": [top_value],
            },
        )
    else:
        yield base_dn, {"objectClass": ["top", "organizationalUnit"], top_attr: [top_value]}
    yield (
        f"{PEOPLE_RDN},{base_dn}",
        {"objectClass": ["top", "organizationalUnit"], "ou": ["people"]},
    )
    for office in sorted({p.office for p in people}):
        yield (
            f"ou={escape_dn_value(office)},{PEOPLE_RDN},{base_dn}",
            {"objectClass": ["top", "organizationalUnit"], "ou": [office]},
        )
    for person in people:
        yield person.dn(base_dn), person.attributes()


def format_ldif_record(dn: str, attributes: dict[str, list[str]]) -> str:
    """One LDIF (RFC 2849) record, ending with a blank line; unsafe values base64-encoded."""
    lines = [_ldif_line("dn", dn)]
    for name, values in attributes.items():
        lines.extend(_ldif_line(name, value) for value in values)
    return "\n".join(lines) + "\n\n"


def write_ldif(
    path: str | Path,
    base_dn: str,
    people: Iterable[PersonSpec],
    *,
    extra: Iterable[tuple[str, dict[str, list[str]]]] = (),
) -> Path:
    """Write the tree of `ldif_entries` (plus `extra` records at the end) as an LDIF file."""
    path = Path(path)
    with path.open("w", encoding="utf-8", newline="\n") as out:
        for dn, attrs in ldif_entries(base_dn, people):
            out.write(format_ldif_record(dn, attrs))
        for dn, attrs in extra:
            out.write(format_ldif_record(dn, attrs))
    return path


def _ldif_line(name: str, value: str) -> str:
    if _is_safe_string(value):
        line = f"{name}: {value}"
    else:
        line = f"{name}:: {base64.b64encode(value.encode('utf-8')).decode('ascii')}"
    return _fold(line)


# RFC 2849 SAFE-STRING: ASCII without NUL/LF/CR, not starting with space, ':' or '<'
_UNSAFE_LDIF = re.compile(r"[\x00\r\n]|^[ :<]| $")


def _is_safe_string(value: str) -> bool:
    return value.isascii() and _UNSAFE_LDIF.search(value) is None


def _fold(line: str, width: int = 76) -> str:
    if len(line) <= width:
        return line
    parts = [line[:width]]
    parts.extend(" " + line[i : i + width - 1] for i in range(width, len(line), width - 1))
    return "\n".join(parts)
