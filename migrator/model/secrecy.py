"""Keeping secrets out of messages.

Messages are built from what migrator knows and may show: the URL or host, the user or bind DN,
the server's result code. Nothing is ever masked after the fact: replacing a password inside a
finished message garbles every word that happens to contain it (a one-letter password turns
`cn=nobody,dc=org` into `cn=n***b***dy,dc=***rg`) and the stars then spell out the password.

The one thing migrator cannot build itself is what a library or a server said in an exchange
that carried the secret (a bind, a login, a token request). Such text is shown whole, or, when
a secret occurs anywhere in it, not at all.
"""

from __future__ import annotations

WITHHELD = "the reply is not shown because the password or secret occurs in it"


def unless_secret(text: str, *secrets: str | None) -> str:
    """`text` unchanged, or WITHHELD when any of `secrets` occurs in it."""
    for secret in secrets:
        if secret and secret in text:
            return WITHHELD
    return text
