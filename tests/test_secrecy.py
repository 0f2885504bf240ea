"""No secret in any message, and no message garbled to keep one out.

Masking a password inside a finished message garbles it and spells the password out by where
the stars fall (a wrong LDAP password "o" would show the bind DN as
`cn=n***b***dy,dc=ife,dc=***rg`). Messages are built from what may be shown; words of a library or a server are
shown whole or, when a secret occurs in them, not at all. The directory and IMAP cases run
against slapd and Dovecot in their own test files; these are the state database and EWS.
"""

from __future__ import annotations

import pytest
import requests
from exchangelib import errors as ews

from migrator.adapters.targets.ews.errors import translate
from migrator.model.errors import PermanentError, StateError
from migrator.model.secrecy import WITHHELD, unless_secret
from migrator.store import open_store


@pytest.mark.parametrize("password", ["o", "1", "127.0.0.1", "Tr0ub4dor"])
def test_a_state_url_password_found_in_the_drivers_words_garbles_nothing(password: str) -> None:
    # port 1 on loopback: connection refused at once, in libpq's words
    with pytest.raises(StateError) as caught:
        open_store(f"postgresql://migrator:{password}@127.0.0.1:1/state")
    message = str(caught.value)
    # the URL's password field is masked by its position, and nothing else is starred
    assert message.startswith(
        "cannot open state database postgresql+psycopg://migrator:***@127.0.0.1:1/state: "
    )
    assert message.count("***") == 1
    if password == "Tr0ub4dor":  # the others are also the host's or the port's own characters
        assert password not in f"{message} {caught.value.hint}"
    assert "PostgreSQL is running on 127.0.0.1:1" in (caught.value.hint or "")


def test_the_drivers_words_are_shown_when_the_password_is_not_in_them() -> None:
    with pytest.raises(StateError) as caught:
        open_store("postgresql://migrator:Zz9@127.0.0.1:1/state")
    assert "Connection refused" in str(caught.value) and WITHHELD not in str(caught.value)


def test_an_ews_answer_holding_the_password_is_left_out_whole() -> None:
    secret = "Hunter2-ews"
    said = ews.ErrorAccessDenied(f"access denied for svc with password {secret}")
    error = translate(said, where="mailbox ana@ife.org.mx", secrets=(secret,))
    assert isinstance(error, PermanentError) and error.reason == "no-permission"
    assert secret not in str(error) and "***" not in str(error)
    assert str(error) == (
        f"mailbox ana@ife.org.mx: the service account may not write to this mailbox (ErrorAccessDenied: {WITHHELD})"
    )
    # an answer without it is quoted as before
    plain = translate(
        requests.exceptions.ConnectionError("connection refused"),
        where="mailbox a@b.mx",
        secrets=(secret,),
    )
    assert "connection refused" in str(plain)


def test_unless_secret_never_masks_part_of_a_text() -> None:
    assert unless_secret("cn=nobody,dc=ife,dc=org", "o") == WITHHELD
    assert unless_secret("cn=nobody,dc=ife,dc=org", "x", None, "") == "cn=nobody,dc=ife,dc=org"


def test_an_imap_connection_lost_at_login_with_the_password_in_its_words() -> None:
    """A server that says BYE while logging in and quotes the command; no proxy of ours says BYE,
    so the exception is made here."""
    import imaplib

    from migrator.adapters.targets.imap.errors import connection_error

    said = imaplib.IMAP4.abort("BYE bad command LOGIN admin Pa55-word-9")
    error = connection_error(
        said, where="mailbox ana@ife.org.mx", what="login", secrets=("Pa55-word-9",)
    )
    assert str(error) == f"mailbox ana@ife.org.mx: connection lost during login: {WITHHELD}"
    plain = connection_error(
        imaplib.IMAP4.abort("socket error: EOF"),
        where="mailbox a@b.mx",
        what="login",
        secrets=("Pa55-word-9",),
    )
    assert str(plain).endswith("socket error: EOF")
