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
    # imap: does the server serve messages as it built them rather than as they were appended
    # (Exchange)? "auto": when it shows itself as Exchange; "yes", "no": as the plan says
    converts: str = "auto"
    token_url: str | None = (
        None  # oauth2/xoauth2: token endpoint (default: Microsoft's for tenant_id)
    )
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
    # a run does not delta-pass an account whose last pass ended less than this many seconds
    # before the run started (hosts started moments apart, runs started back to back)
    pass_interval: float = 0.0


DELETION_MODES = ("mirror", "keep")


@dataclass(frozen=True)
class FilterSettings:
    """[settings]: users' Sieve filters and vacation replies (docs/sieve.md)."""

    sieve: str = "off"  # off | file | managesieve
    rules: bool = True
    vacation: bool = True
    forwarding: bool = False  # redirect to addresses outside internal_domains
    internal_domains: tuple[str, ...] = ()  # besides the account's own domains
    remove_outlook_rules: bool = False  # let EWS drop Outlook's client-side rules blob
    graph: bool = (
        False  # IMAP target: apply through Microsoft Graph with [target]'s app credentials
    )
    graph_url: str = "https://graph.microsoft.com/v1.0"
    # file: templates like [source] path; Pigeonhole's defaults ~/.dovecot.sieve and ~/sieve
    path: str | None = None
    scripts: str | None = None
    root: str | None = None  # every script path must stay inside it (default: [source] root)
    separator: str = "."  # the hierarchy separator in fileinto names (Dovecot's namespace)
    prefix: str = ""  # a namespace prefix fileinto names carry and folder names do not
    # managesieve (RFC 5804); unset values come from an IMAP [source]
    host: str | None = None
    port: int = 4190
    tls: str = "starttls"  # starttls | ssl | none
    tls_verify: bool = True
    ca_file: str | None = None
    login: str | None = None  # template
    master_user: str | None = None
    authzid: bool = False
    password_env: str | None = None
    password_file: str | None = None
    timeout: float = 30.0


@dataclass(frozen=True)
class CutoverSettings:
    """[cutover]: the Postfix instance `migrator cutover` switches, and how."""

    transport_map: str  # the map file (a path), written between migrator's markers
    map_type: str = "hash"  # Postfix's lookup table type of transport_map
    nexthop: str | None = None  # transport_maps result; default smtp:[host of [target] url]:25
    config_directory: str | None = None  # `postconf -c DIR` etc.: one of several instances
    postmap: tuple[str, ...] = ("postmap",)  # each command as words (e.g. sudo -n postmap)
    postconf: tuple[str, ...] = ("postconf",)
    postfix: tuple[str, ...] = ("postfix",)
    postqueue: tuple[str, ...] = ("postqueue",)
    # seconds after the switch the same command waits and runs the final delta; None: the
    # final delta runs when `cutover` is run again
    final_delta_after: float | None = None
    # how long Postfix may take to show the new routing, and to deliver what it had queued
    postfix_timeout: float = 60.0
    # also ask the running Postfix's address resolver (needs access to its private socket)
    resolver: bool = True


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
    cutover: CutoverSettings | None = None  # [cutover], when the plan has one
    state_url: str | None = None  # [state] url; load_plan makes a relative SQLite path absolute
    description: str | None = None
    filters: FilterSettings = field(default_factory=FilterSettings)
    # [state] retention_days: `migrator prune` removes events and finished runs older than
    # this (None: prune needs --older-than)
    retention_days: float | None = None
