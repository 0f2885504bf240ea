"""Rules of the targets that need no server: folder naming, dates, categories, request sizing,
error classification and the XML of a created message."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
import requests
from exchangelib import errors as ews
from exchangelib.util import xml_to_str
from exchangelib.version import EXCHANGE_2016, Version

from migrator.adapters.targets.dates import header_date, submit_and_delivery
from migrator.adapters.targets.ews.connection import FailFastWithHints, retry_after_seconds
from migrator.adapters.targets.ews.errors import HttpThrottled, is_ambiguous, translate
from migrator.adapters.targets.ews.properties import MimeMessage
from migrator.adapters.targets.ews.target import base64_size, categories_for, request_batches
from migrator.adapters.targets.naming import FolderNaming, TargetPath, clean_name
from migrator.model.errors import PermanentError, PlanError, TransientError
from migrator.model.mail import Flags, FolderRole

# --- naming -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Projects", "Projects"),
        ("Entwürfe", "Entwürfe"),
        ("Bad\x07Name", "Bad_Name"),
        ("  padded  ", "padded"),
        ("", "_"),
        ("   ", "_"),
        ("..", "_.."),
        ("x" * 300, "x" * 255),
        ("a/b", "a/b"),  # one level: the path is a tuple, so a slash is just a character
    ],
)
def test_clean_name(name: str, expected: str) -> None:
    assert clean_name(name) == expected


def test_roles_go_to_well_known_folders() -> None:
    naming = FolderNaming()
    assert naming.target_path(("INBOX",), FolderRole.INBOX) == TargetPath(FolderRole.INBOX, ())
    assert naming.target_path(("Sent Messages",), FolderRole.SENT) == TargetPath(
        FolderRole.SENT, ()
    )
    assert naming.target_path(("Papelera",), FolderRole.TRASH) == TargetPath(FolderRole.TRASH, ())
    assert naming.target_path(("Archivo",), FolderRole.ARCHIVE) == TargetPath(None, ("Archive",))
    assert FolderNaming(archive_folder="Old/Archive").target_path(
        ("Archivo",), FolderRole.ARCHIVE
    ) == TargetPath(None, ("Old", "Archive"))


def test_subfolders_follow_inbox_and_role_folders() -> None:
    naming = FolderNaming()
    assert naming.target_path(("INBOX", "Lists"), FolderRole.NONE) == TargetPath(
        FolderRole.INBOX, ("Lists",)
    )
    assert naming.target_path(("inbox", "a", "b"), FolderRole.NONE).display() == ("inbox", "a", "b")
    role_paths: dict[tuple[str, ...], FolderRole] = {("Sent",): FolderRole.SENT}
    assert naming.target_path(("Sent", "2019"), FolderRole.NONE, role_paths) == TargetPath(
        FolderRole.SENT, ("2019",)
    )
    assert naming.target_path(("Projects", "X"), FolderRole.NONE, role_paths) == TargetPath(
        None, ("Projects", "X")
    )


def test_folder_map_overrides_by_longest_prefix() -> None:
    naming = FolderNaming(
        folder_map={"Old": "Legacy", "Old/Mail": "Imported/Mail", "INBOX": "Former inbox"}
    )
    assert naming.target_path(("Old", "Mail", "2019"), FolderRole.NONE) == TargetPath(
        None, ("Imported", "Mail", "2019")
    )
    assert naming.target_path(("Old", "Notes"), FolderRole.NONE) == TargetPath(
        None, ("Legacy", "Notes")
    )
    # the plan's map wins over the role
    assert naming.target_path(("INBOX",), FolderRole.INBOX) == TargetPath(None, ("Former inbox",))
    mapped_into_inbox = FolderNaming(folder_map={"Lists": "INBOX/Lists"})
    assert mapped_into_inbox.target_path(("Lists",), FolderRole.NONE) == TargetPath(
        FolderRole.INBOX, ("Lists",)
    )


def test_exclude_patterns_match_folder_and_subfolders_ignoring_case() -> None:
    naming = FolderNaming(exclude_folders=("Trash", "Archive/19*", "*/Spam"))
    assert naming.is_excluded(("trash",))
    assert naming.is_excluded(("Trash", "old"))
    assert naming.is_excluded(("Archive", "1998"))
    assert not naming.is_excluded(("Archive", "2001"))
    assert naming.is_excluded(("Lists", "spam"))
    assert not naming.is_excluded(("Trashy",))
    assert not naming.is_excluded(("INBOX",))


def test_bad_plan_values_name_the_key() -> None:
    with pytest.raises(PlanError, match=r"target.folder_map"):
        FolderNaming(folder_map={"A": "/"})
    with pytest.raises(PlanError, match=r"archive_folder"):
        FolderNaming(archive_folder="")


# --- dates ----------------------------------------------------------------------------------------


def test_header_date_is_read_leniently_from_the_top_header_block() -> None:
    raw = (
        b"Received: from x by y; Mon, 1 Jan 2001 00:00:00 +0000\r\n"
        b"Subject: caf\xe9 8-bit\r\n"
        b"date:\r\n Tue, 01 Jul 2003 10:52:37 +0200 (CEST)\r\n\r\n"
        b"Date: Wed, 02 Jul 2003 00:00:00 +0000\r\n"
    )
    assert header_date(raw) == datetime(2003, 7, 1, 8, 52, 37, tzinfo=UTC)
    assert header_date(b"Subject: x\n\nDate: Tue, 01 Jul 2003 10:52:37 +0000\n") is None
    assert header_date(b"Date: the day after tomorrow\n\nbody") is None
    assert header_date(b"") is None


def test_submit_and_delivery_times_fall_back_on_each_other() -> None:
    internal = datetime(2024, 3, 1, 9, 30, tzinfo=UTC)
    dated = b"Date: Fri, 01 Mar 2024 08:00:00 +0000\n\nx"
    assert submit_and_delivery(dated, internal) == (
        datetime(2024, 3, 1, 8, 0, tzinfo=UTC),
        internal,
    )
    assert submit_and_delivery(b"Subject: x\n\nx", internal) == (internal, internal)
    header = datetime(2024, 3, 1, 8, 0, tzinfo=UTC)
    assert submit_and_delivery(dated, None) == (header, header)
    assert submit_and_delivery(b"x", None) == (None, None)
    naive = datetime(2024, 3, 1, 9, 30)
    assert submit_and_delivery(b"x", naive)[1] == internal
    eastern = datetime(2024, 3, 1, 4, 30, tzinfo=timezone(timedelta(hours=-5)))
    assert submit_and_delivery(b"x", eastern)[1] == internal


# --- categories -------------------------------------------------------------------------------


def test_keywords_become_categories_without_protocol_keywords() -> None:
    flags = Flags(
        keywords=(
            "Work",
            "$Forwarded",
            "$MDNSent",
            "Junk",
            "NonJunk",
            "$label1",
            "work",
            "Projekt Ä",
            "$Label4",
        )
    )
    assert categories_for(flags) == ["Work", "Important", "Projekt Ä", "To Do"]
    assert categories_for(Flags()) == []


# --- request sizing ---------------------------------------------------------------------------


def test_requests_are_split_by_base64_bytes_and_count() -> None:
    mb = 1024 * 1024
    sizes = [(0, 10 * mb), (1, 10 * mb), (2, 10 * mb), (3, 40 * mb), (4, 1), (5, 1)]
    batches = list(request_batches(sizes, max_bytes=25 * mb, max_items=100))
    # 10 MB is 13.3 MB of base64: only one fits under 25 MB with another
    assert batches == [[0], [1], [2], [3], [4, 5]]
    small = [(i, 100) for i in range(250)]
    assert [len(b) for b in request_batches(small, max_bytes=25 * mb, max_items=100)] == [
        100,
        100,
        50,
    ]
    assert base64_size(3) == 4 and base64_size(4) == 8 and base64_size(0) == 0


# --- the created message -----------------------------------------------------------------------


def test_created_message_carries_only_what_we_set() -> None:
    message = MimeMessage(
        mime_content=b"Importance: high\r\nSubject: x\r\n\r\nbody",
        is_read=False,
        migrator_message_flags=0,
        migrator_source_key="k1",
        categories=["Work"],
    )
    xml = xml_to_str(message.to_xml(version=Version(EXCHANGE_2016)))
    # defaults exchangelib would add would override what the MIME headers say
    for element in ("Importance", "Sensitivity", "IsReadReceiptRequested", "ReminderIsSet"):
        assert f"<t:{element}>" not in xml
    assert 'PropertyTag="0xe07"' in xml and "<t:IsRead>0</t:IsRead>" in xml
    assert 'PropertyName="MigratorSourceKey"' in xml and "<t:Value>k1</t:Value>" in xml


# --- error classification ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "kind", "reason"),
    [
        (ews.ErrorNonExistentMailbox("x"), PermanentError, "no-mailbox"),
        (ews.ErrorImpersonateUserDenied("x"), PermanentError, "no-permission"),
        (ews.ErrorAccessDenied("x"), PermanentError, "no-permission"),
        (ews.UnauthorizedError("x"), PermanentError, "auth"),
        (ews.ErrorMessageSizeExceeded("x"), PermanentError, "too-large"),
        (ews.ErrorMimeContentConversionFailed("x"), PermanentError, "rejected"),
        (ews.ErrorCorruptData("x"), PermanentError, "rejected"),
        (ews.ErrorInvalidRequest("x"), PermanentError, "rejected"),
        (ews.ErrorQuotaExceeded("x"), PermanentError, "quota"),
        (ews.ErrorFolderNotFound("x"), PermanentError, "not-found"),
        (ews.ErrorMailboxMoveInProgress("x"), TransientError, None),
        (ews.ErrorMailboxStoreUnavailable("x"), TransientError, None),
        (ews.ErrorTimeoutExpired("x"), TransientError, None),
        (requests.exceptions.ConnectionError("refused"), TransientError, None),
        (
            ews.TransportError("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed"),
            PermanentError,
            "tls",
        ),
        (
            ews.MalformedResponseError("Unknown failure in response. Code: 404 headers"),
            PermanentError,
            "config",
        ),
        (ews.ErrorCalendarIsCancelledForRemove("x"), PermanentError, "ews-error"),
    ],
)
def test_classification(exc: Exception, kind: type, reason: str | None) -> None:
    out = translate(exc, where="mailbox a@b")
    assert type(out) is kind
    assert str(out).startswith("mailbox a@b: ")
    if reason is not None:
        assert isinstance(out, PermanentError) and out.reason == reason


def test_server_hints_are_kept_and_invented_ones_dropped() -> None:
    busy = translate(ews.ErrorServerBusy("busy", back_off=2.5), where="w")
    assert isinstance(busy, TransientError) and busy.retry_after == 2.5
    no_hint = translate(ews.ErrorServerBusy("busy", back_off=0), where="w")
    assert isinstance(no_hint, TransientError) and no_hint.retry_after is None
    throttled = translate(HttpThrottled(503, 7.0), where="w")
    assert isinstance(throttled, TransientError) and throttled.retry_after == 7.0
    assert "HTTP 503" in str(throttled)
    broken = ews.ErrorServerBusy(
        "Reraised from ErrorTimeoutExpired(Reraised from ConnectionError())"
    )
    assert "connection" in str(translate(broken, where="w"))
    assert is_ambiguous(broken) and not is_ambiguous(HttpThrottled(503, None))
    assert not is_ambiguous(ews.ErrorServerBusy("busy", back_off=1.0))


def test_bugs_of_ours_are_not_disguised() -> None:
    bug = KeyError("oops")
    assert translate(bug, where="w") is bug


def _response(status: int, headers: dict[str, str]) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response.headers.update(headers)
    response._content = b""
    return response


def test_retry_after_header_forms() -> None:
    assert retry_after_seconds(_response(503, {"Retry-After": "30"})) == 30.0
    assert retry_after_seconds(_response(503, {})) is None
    dated = _response(
        429,
        {"Date": "Wed, 21 Oct 2026 07:28:00 GMT", "Retry-After": "Wed, 21 Oct 2026 07:28:45 GMT"},
    )
    assert retry_after_seconds(dated) == 45.0
    assert retry_after_seconds(_response(503, {"Retry-After": "soon"})) is None


@pytest.mark.parametrize("status", [429, 503])
def test_policy_turns_throttling_statuses_into_server_busy_with_hint(status: int) -> None:
    with pytest.raises(HttpThrottled) as caught:
        FailFastWithHints().raise_response_errors(_response(status, {"Retry-After": "3"}))
    assert caught.value.back_off == 3.0 and caught.value.status == status
    assert FailFastWithHints().fail_fast


# --- configuration --------------------------------------------------------------------------


def test_oauth2_client_credentials_are_configured_without_a_network() -> None:
    from exchangelib import OAuth2Credentials

    from migrator.adapters.targets.ews.connection import make_configuration
    from migrator.model.plan import TargetSettings

    settings = TargetSettings(
        kind="ews",
        url="https://mail.example.org/EWS/Exchange.asmx",
        auth="oauth2",
        client_id="app-id",
        tenant_id="tenant-id",
        client_secret_env="X",
    )
    config = make_configuration(settings, {"client_secret": "s3cret"}, max_connections=2)
    assert isinstance(config.credentials, OAuth2Credentials)
    assert config.credentials.client_id == "app-id" and config.credentials.tenant_id == "tenant-id"
    assert "s3cret" not in repr(config.credentials)
    assert config.retry_policy.fail_fast and config.max_connections == 2
    with pytest.raises(PlanError, match="client_secret"):
        make_configuration(settings, {}, max_connections=2)


def test_plan_mistakes_are_reported_as_plan_errors() -> None:
    from migrator.adapters.targets import open_target
    from migrator.model.plan import TargetSettings

    with pytest.raises(PlanError, match="url"):
        open_target(TargetSettings(kind="ews"), secrets={})
    with pytest.raises(PlanError, match="kerberos"):
        open_target(
            TargetSettings(kind="ews", url="https://x/EWS/Exchange.asmx", auth="kerberos"),
            secrets={},
        )
    with pytest.raises(PlanError, match="password"):
        open_target(
            TargetSettings(kind="ews", url="https://x/EWS/Exchange.asmx", username="u"), secrets={}
        )
    with pytest.raises(PlanError, match="unknown target kind"):
        open_target(TargetSettings(kind="pop3"), secrets={})
