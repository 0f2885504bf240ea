"""Microsoft's EWS schema (messages.xsd, types.xsd), compiled once per process.

The simulator checks every request against it as Exchange does (a request that does not match
gets ErrorSchemaValidation) and every answer it writes (an answer that does not match is a bug of
the simulator, reported by `EwsSimulator.stop()`). The files are Microsoft's published schema
(Exchange 2016 level) and are not part of this repository: they are looked for in
$MIGRATOR_EWS_SCHEMA, then in `../shared/ews-schema` beside the repository (where CI has them),
then in /work/shared/ews-schema. See docs/ews-simulator.md.

Two things in the files need help before libxml2 accepts them (never edit the files: a patched
copy is compiled in memory): types.xsd imports the xml: namespace without a location, and
libxml2 rejects `ArrayOfTransitionsType` (time-zone transitions: three element refs in a
sequence that libxml2 calls non-deterministic); those refs are dropped, nothing migrated uses them.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

from lxml import etree

from .soap import M_NS, T_NS

SCHEMA_ENV = "MIGRATOR_EWS_SCHEMA"
_FALLBACK = Path("/work/shared/ews-schema")
_FILES = ("messages.xsd", "types.xsd")
_XS = "http://www.w3.org/2001/XMLSchema"
_XML_NS = "http://www.w3.org/XML/1998/namespace"
_XML_XSD = f"""<?xml version="1.0"?>
<xs:schema xmlns:xs="{_XS}" targetNamespace="{_XML_NS}">
  <xs:attribute name="lang" type="xs:language"/>
  <xs:attribute name="space">
    <xs:simpleType><xs:restriction base="xs:NCName">
      <xs:enumeration value="default"/><xs:enumeration value="preserve"/>
    </xs:restriction></xs:simpleType>
  </xs:attribute>
  <xs:attribute name="base" type="xs:anyURI"/>
  <xs:attribute name="id" type="xs:ID"/>
</xs:schema>""".encode()
_WRAPPER = f"""<xs:schema xmlns:xs="{_XS}">
  <xs:import namespace="{_XML_NS}" schemaLocation="ews-schema:/xml.xsd"/>
  <xs:import namespace="{T_NS}" schemaLocation="ews-schema:/types.xsd"/>
  <xs:import namespace="{M_NS}" schemaLocation="ews-schema:/messages.xsd"/>
</xs:schema>""".encode()
_UNLOADABLE_REFS = {
    "t:AbsoluteDateTransition",
    "t:RecurringDayTransition",
    "t:RecurringDateTransition",
}


class SchemaNotFound(RuntimeError):
    """The EWS schema files are not where the simulator looks for them."""


def locate(repo: Path | None = None) -> Path | None:
    """The directory holding messages.xsd and types.xsd, or None.

    $MIGRATOR_EWS_SCHEMA must name such a directory when set (a wrong setting is an error, not a
    reason to look elsewhere)."""
    configured = os.environ.get(SCHEMA_ENV)
    if configured:
        path = Path(configured)
        if not all((path / name).is_file() for name in _FILES):
            raise SchemaNotFound(
                f"{SCHEMA_ENV}={configured} does not hold {' and '.join(_FILES)} "
                "(Microsoft's EWS schema, see docs/ews-simulator.md)"
            )
        return path
    repo = repo or Path(__file__).resolve().parents[3]
    for candidate in (repo.parent / "shared" / "ews-schema", _FALLBACK):
        if all((candidate / name).is_file() for name in _FILES):
            return candidate
    return None


def _patched_types(raw: bytes) -> bytes:
    tree = etree.fromstring(raw)
    for imp in tree.findall(f"{{{_XS}}}import"):
        if imp.get("namespace") == _XML_NS and not imp.get("schemaLocation"):
            imp.set("schemaLocation", "xml.xsd")
    for ctype in tree.iterfind(f"{{{_XS}}}complexType[@name='ArrayOfTransitionsType']"):
        for holder in ctype.iter(f"{{{_XS}}}sequence", f"{{{_XS}}}choice"):
            for ref in [e for e in holder if e.get("ref") in _UNLOADABLE_REFS]:
                holder.remove(ref)
    return etree.tostring(tree)


class _InMemory(etree.Resolver):
    def __init__(self, documents: dict[str, bytes]) -> None:
        super().__init__()
        self._documents = documents

    def resolve(self, url: str, pubid: str | None, context: object) -> object:
        name = url.rsplit("/", 1)[-1]
        if name in self._documents:
            return self.resolve_string(
                self._documents[name], context, base_url=f"ews-schema:/{name}"
            )
        return None


def compile_schema(directory: Path) -> etree.XMLSchema:
    documents = {
        "xml.xsd": _XML_XSD,
        "types.xsd": _patched_types((directory / "types.xsd").read_bytes()),
        "messages.xsd": (directory / "messages.xsd").read_bytes(),
    }
    parser = etree.XMLParser(no_network=True)
    parser.resolvers.add(_InMemory(documents))
    wrapper = etree.fromstring(_WRAPPER, parser, base_url="ews-schema:/wrapper.xsd")
    return etree.XMLSchema(wrapper)


@dataclass(frozen=True)
class Violation:
    """Where and why an element does not match the schema (the fields of Exchange's
    ErrorSchemaValidation MessageXml)."""

    line: int
    position: int
    text: str


class EwsSchema:
    """The compiled schema. Validation is serialised: an lxml validator keeps its error log on
    itself, so one object must not validate in two threads at once (it takes microseconds for
    most requests; MimeContent is a plain string in the schema, so a 40 MB one costs no more)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._schema = compile_schema(directory)
        self._lock = threading.Lock()

    def check(self, element: etree._Element) -> Violation | None:
        with self._lock:
            if self._schema.validate(element):
                return None
            # the first mismatch: .NET's validating reader stops there too
            first = self._schema.error_log[0]
            line, column, message = first.line, first.column, first.message
        return Violation(line=line or 1, position=max(column, 0), text=_reworded(message))


def _reworded(message: str) -> str:
    """libxml2's wording, with Clark-notation names written as .NET writes them."""
    for ns in (M_NS, T_NS):
        message = message.replace(f"{{{ns}}}", "")
    return message.strip()


_cache_lock = threading.Lock()
_cache: dict[Path, EwsSchema] = {}


def load(directory: Path | None = None) -> EwsSchema:
    """The compiled schema from `directory` (default: `locate()`), compiled once per process.

    Raises SchemaNotFound with what to do when the files cannot be found."""
    if directory is None:
        directory = locate()
    if directory is None:
        raise SchemaNotFound(
            "Microsoft's EWS schema (messages.xsd, types.xsd) was not found: set "
            f"{SCHEMA_ENV} to its directory, or put it in ../shared/ews-schema beside the "
            "repository (see docs/ews-simulator.md); EwsSimulator(validate=False) runs without it"
        )
    directory = directory.resolve()
    with _cache_lock:
        found = _cache.get(directory)
        if found is None:
            found = _cache[directory] = EwsSchema(directory)
        return found
