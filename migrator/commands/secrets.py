"""Resolve the secrets a plan names (environment variables or files) for the adapters."""

from __future__ import annotations

from migrator.model.plan import Plan
from migrator.plan.secrets import read_secret


def target_secrets(plan: Plan) -> dict[str, str]:
    t = plan.target
    secrets: dict[str, str] = {}
    password = read_secret(
        "target password", env=t.password_env, file=t.password_file, key="[target] password_env"
    )
    if password is not None:
        secrets["password"] = password
    client_secret = read_secret(
        "target OAuth2 client secret",
        env=t.client_secret_env,
        file=t.client_secret_file,
        key="[target] client_secret_env",
    )
    if client_secret is not None:
        secrets["client_secret"] = client_secret
    return secrets


def source_password(plan: Plan) -> str | None:
    s = plan.source
    return read_secret(
        "source password", env=s.password_env, file=s.password_file, key="[source] password_env"
    )
