"""The plan: what an operator writes in plans/*.toml, after validation.

Only names of environment variables or files are kept for secrets, never the secrets.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class AttributeMap:
    """Which directory attribute holds each account field."""

    address: str = "mail"
    uid: str = "uid"
    name: str = "cn"
    batch: str = "ou"  # when absent on an entry, the nearest ou= of its DN is used
    extra: tuple[str, ...] = ()  # more attributes to fetch and keep (usable in templates)

    def requested(self) -> list[str]:
        seen: list[str] = []
        for name in (self.address, self.uid, self.name, self.batch, *self.extra):
            if name and name not in seen:
                seen.append(name)
        return seen


@dataclass(frozen=True)
class DirectorySettings:
    url: str  # ldap://host:port, ldaps://host:port or ldif:PATH
    base: str
    filter: str = "(objectClass=*)"
    population: str = "(|(objectClass=person)(objectClass=inetOrgPerson))"
    bind_dn: str | None = None
    password_env: str | None = None
    password_file: str | None = None
    start_tls: bool = False
    tls_verify: bool = True
    ca_file: str | None = None
    page_size: int = 200
    timeout: float = 30.0
    attributes: AttributeMap = field(default_factory=AttributeMap)

    @property
    def is_ldif(self) -> bool:
        return self.url.startswith("ldif:")

    @property
    def ldif_path(self) -> str:
        return self.url[len("ldif:") :]


@dataclass(frozen=True)
class SourceSettings:
    kind: str  # maildir | mbox | imap
    # file sources
    root: str | None = None
    path: str | None = None  # template: where one account's mailbox is
    folders_path: str | None = None  # mbox: template of a directory of further mbox folders
    maildir_layout: str = "auto"  # auto | maildir++ | fs
    mbox_variant: str = "auto"  # auto | mboxo | mboxrd | mboxcl | mboxcl2
    # imap
    host: str | None = None
    port: int | None = None
    tls: str = "ssl"  # ssl | starttls | none
    tls_verify: bool = True
    ca_file: str | None = None
    login: str = "{address}"  # template
    master_user: str | None = None  # Dovecot master user: logs in as "login*master_user"
    authzid: bool = False  # SASL PLAIN with the account as authorization identity instead
    password_env: str | None = None
    password_file: str | None = None
    timeout: float = 60.0


@dataclass(frozen=True)
class TargetSettings:
    kind: str  # ews | imap
    url: str | None = None  # EWS endpoint https://host/EWS/Exchange.asmx
    auth: str = "ntlm"  # ntlm | basic | oauth2 (ews); login | plain | xoauth2 (imap)
    username: str | None = None
    password_env: str | None = None
    password_file: str | None = None
    client_id: str | None = None
    tenant_id: str | None = None
    client_secret_env: str | None = None
    client_secret_file: str | None = None
    impersonation: bool = True
    tls_verify: bool = True
    ca_file: str | None = None
    host: str | None = None
    port: int | None = None
    tls: str = "ssl"
    max_message_size: int = 35 * 1024 * 1024
    address: str = "{address}"  # template: source address -> target SMTP address
    archive_folder: str = "Archive"
    folder_map: dict[str, str] = field(default_factory=dict)
    exclude_folders: tuple[str, ...] = ()
    timeout: float = 120.0
    # imap: how the administrator (`username`) logs in as a mailbox with auth = "login";
    # {address}, {local}, {domain} are the mailbox's, {username} the administrator's.
    # Dovecot master user: "{address}*{username}"; Exchange: "DOMAIN\\{username}\\{local}".
    proxy_login: str = "{address}*{username}"
    tag_header: bool = False  # imap: add X-Migrator-Key so find() works from keys alone
    token_url: str | None = None  # imap xoauth2: token endpoint (default: Microsoft's for tenant_id)
    oauth_scope: str = "https://outlook.office365.com/.default"


@dataclass(frozen=True)
class RunSettings:
    workers: int = 4
    max_account_attempts: int = 3
    chunk_messages: int = 50
    chunk_bytes: int = 24 * 1024 * 1024
    target_concurrency: int = 16
    lease_seconds: int = 120
    # a message the source no longer holds: "mirror" removes its copy from the target (EWS:
    # SoftDelete into Recoverable Items), "keep" leaves it there and only reports it
    deletions: str = "mirror"
    # a pass that would delete more than this percent of an account's messages deletes none
    # of them and stops the account (a source disk not mounted, a folder renamed by hand)
    deletion_limit: int = 20


DELETION_MODES = ("mirror", "keep")

# The state database when neither --state, $MIGRATOR_STATE nor the plan names one. Like every
# relative path of a plan, its file is found from the plan's folder.
DEFAULT_STATE_URL = "sqlite:///state/migrator.db"


@dataclass(frozen=True)
class Plan:
    name: str
    file: str  # the plan file it was read from (for error messages)
    directory: DirectorySettings
    source: SourceSettings
    target: TargetSettings
    run: RunSettings = field(default_factory=RunSettings)
    state_url: str | None = None  # [state] url; load_plan makes a relative SQLite path absolute
    description: str | None = None
