"""Categories are one list in Exchange: carrying a keyword added in the source means reading
the item's categories and writing them back. A user who changes the item between the two
(here: adds a category of their own) makes Exchange answer ErrorIrresolvableConflict to the
write (it carries the ChangeKey it read, with NeverOverwrite); the adapter reads again and
merges, so the user's category stays and the source's is added."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from migrator.adapters.targets import open_target
from migrator.adapters.targets.base import FlagChange
from migrator.model.mail import Flags, FolderRole, UploadItem
from migrator.model.plan import TargetSettings
from tests.fixtures.ews import SIM_PASSWORD, SIM_USER, make_account, start_simulator
from tests.test_target_contract import message


def test_a_category_change_merges_with_what_a_user_did_meanwhile(tmp_path: Any) -> None:
    sim = start_simulator(tmp_path / "ews")
    address = "ana@ife.org.mx"
    sim.add_mailbox(address)
    target = open_target(
        TargetSettings(
            kind="ews",
            url=sim.url,
            auth="basic",
            username=SIM_USER,
            password_env="UNUSED",
            timeout=30.0,
        ),
        secrets={"password": SIM_PASSWORD},
    )
    try:
        inbox = target.ensure_folder(address, ("INBOX",), FolderRole.INBOX)
        before = Flags(keywords=("Work",))
        [stored] = target.upload(
            address, inbox, [UploadItem("k1", message(1), before, datetime(2024, 3, 1, tzinfo=UTC))]
        )
        assert stored.target_id
        user = make_account(sim, address)
        account = target._account(address)  # type: ignore[attr-defined]
        read: Callable[..., Any] = account.fetch
        interfered: list[bool] = []

        def fetch_then_user_acts(*args: Any, **kwargs: Any) -> Any:
            found = list(read(*args, **kwargs))
            if not interfered:  # once: the user tags the item right after we read it
                [item] = list(user.fetch(ids=[(stored.target_id, None)]))
                item.categories = [*item.categories, "Personal"]
                item.save(update_fields=["categories"])
                interfered.append(True)
            return found

        account.fetch = fetch_then_user_acts
        [answer] = target.update_flags(
            address, inbox, [FlagChange(stored.target_id, before, Flags(keywords=("Home", "Work")))]
        )  # type: ignore[attr-defined]
        assert answer is None and interfered
        assert sim.stats().requests["UpdateItem"] == 3  # the user's, ours refused, ours again
        [item] = sim.items(address)
        assert item.categories == ["Work", "Personal", "Home"]
    finally:
        target.close()
        sim.stop()
