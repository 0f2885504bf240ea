"""The part of a delta pass that carries users' changes besides new mail: flags, moves between
folders, deletions. Mixed into AccountJob (mailbox.py), which lists the folders.

While listing, a folder records what it cannot settle alone: messages that are gone from it
(`_gone`, only from a listing that is complete) and messages new to it that the ledger knows
in another folder (`_held`, maybe moved there). Once every folder is listed, `_reconcile`
pairs them: a held message with a gone one of the same identity (the Maildir or mbox key,
which survives a move; the content fingerprint for IMAP, whose UIDs do not) is a move, carried
as a move in the target (never uploaded again); held messages left over are new (copies) and
are uploaded; gone messages left over are deletions.

A move or deletion is announced in the ledger (committed, durable) before the target is asked,
and recorded with its outcome in one transaction; a pass that finds an announcement left by a
crash settles it first (`_resolve_pending`): a move is looked for in its destination, a
deletion is done again (it is idempotent and names exact ids).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from migrator.adapters.targets.base import CarriesChanges, FlagChange, TargetFolder
from migrator.engine import crashpoints, delta
from migrator.model.errors import MigratorError, PermanentError
from migrator.model.mail import Flags, FolderInfo, MessageRecord
from migrator.model.reasons import Reason
from migrator.model.status import NOT_SENT, MessageState
from migrator.store import changes, ledger
from migrator.store.changes import Moved, Placed

if TYPE_CHECKING:
    from migrator.adapters.sources import Source
    from migrator.engine.mailbox import Context
    from migrator.engine.progress import AccountOutcome
    from migrator.store.claims import Claim
    from migrator.store.ledger import StoredFolder

T = TypeVar("T")

NOT_FOUND = "not-found"  # the target no longer holds an item (a user moved or deleted it there)
FLAG_BATCH = 200  # flag changes per request to the target
MOVE_BATCH = 200  # messages per move request
# keys of skipped items that stand for a whole directory or file of a folder: a listing that
# holds one did not see the folder's messages, so none of them counts as gone
PARTIAL_KEYS = frozenset({"cur/", "new/", "folder/"})
# a pass deleting this many messages or fewer never trips the deletion limit: a user cleaning a
# small mailbox is not a disk that was not mounted
DELETION_FLOOR = 10


@dataclass(frozen=True)
class Held:
    """A message new to its folder that the ledger knows elsewhere: maybe moved there."""

    folder: FolderInfo
    folder_id: int
    record: MessageRecord

    @property
    def identity(self) -> str:
        return self.record.extra.get("fingerprint") or self.record.key


class Reconciler:
    """What AccountJob lends (see mailbox.py) and what this mixin keeps per pass."""

    ctx: Context
    claim: Claim
    mailbox: str
    outcome: AccountOutcome
    _stored: dict[str, StoredFolder]
    _ensured: dict[str, TargetFolder]
    _preflight: Callable[[], None]
    _retry: Callable[[Callable[[], Any]], Any]
    _check_stop: Callable[[], None]
    _ensure: Callable[[FolderInfo], TargetFolder]
    _chunk: Callable[[FolderInfo, int, TargetFolder, Sequence[MessageRecord]], None]
    _inflight_by_folder: dict[int, list[str]]

    def _init_reconcile(self) -> None:
        self._gone: list[Placed] = []
        self._held: list[Held] = []
        self._identities: dict[str, set[tuple[int, str]]] | None = None
        self._done_before = 0  # the account's migrated messages when the pass began

    # --- while listing ---------------------------------------------------------------------
    def _may_have_moved(self, record: MessageRecord, folder_id: int) -> bool:
        """Whether the ledger knows this new message (by identity) in another folder, or in
        this one under another key: it may have moved, and waits until every folder is listed."""
        if not self._done_before and not self._inflight_by_folder:
            return False  # a first pass, or nothing migrated yet: nothing can have moved
        if self._identities is None:
            self._identities = changes.identities(self.ctx.store, self.claim.account_id)
        found = self._identities.get(record.extra.get("fingerprint") or record.key)
        if not found:
            return False
        return any(fid != folder_id or key != record.key for fid, key in found)

    def _note_gone(self, folder_id: int, known: dict[str, changes.Known], listed: set[str]) -> None:
        """After a complete listing: what the ledger holds of this folder that the source does
        not list any more. Migrated ones wait for the end of the pass (moved or deleted?);
        skipped ones are forgotten (nothing of them is in the target); ones whose copy was kept
        (deletions = "keep") and that are back are marked present again."""
        store, claim = self.ctx.store, self.claim
        back = [key for key, entry in known.items() if entry.removed and key in listed]
        if back:
            changes.mark_removed(
                store, claim, [p.id for p in changes.placed(store, folder_id, back)], removed=False
            )
        gone = [key for key in known if key not in listed]
        if not gone:
            return
        done = [
            k
            for k in gone
            if known[k].state == MessageState.DONE and not known[k].removed and not known[k].pending
        ]
        if done:
            self._gone.extend(changes.placed(store, folder_id, done))
        unsent = [k for k in gone if known[k].state in NOT_SENT]
        if unsent:
            changes.forget(store, claim, changes.unsent_rows(store, folder_id, unsent))

    def _note_vanished_folders(self, listed_natives: set[str]) -> None:
        """Folders the ledger knows that the source does not list any more (deleted or renamed
        by the user): every message migrated from them is gone (moved or deleted)."""
        for row in self._stored.values():
            if row.native in listed_natives:
                continue
            if self.ctx.target.is_excluded(tuple(row.display.split("/"))):
                continue  # left out by the plan now: not the user's doing
            known = changes.known_states(self.ctx.store, row.id)
            if known:
                self._note_gone(row.id, known, set())

    # --- folders renamed -------------------------------------------------------------------
    def _follow_renames(self, source: Source, listed: Sequence[FolderInfo]) -> None:
        """A folder the ledger knows that the source does not list any more, while a new one
        holds at least half of its migrated messages, was renamed (or moved below another
        folder) by the user: its target folder is renamed with it and keeps its items; the
        row takes the new name. What did not follow it is settled message by message later
        (moves, deletions). Each new folder is listed once more for this (no body is read);
        a pass where no folder vanished costs nothing."""
        target = self.ctx.target
        if not isinstance(target, CarriesChanges):
            return
        natives = {f.native for f in listed}
        vanished = [
            row
            for row in self._stored.values()
            if row.native not in natives
            and row.done_count
            and row.target_folder_id
            and not target.is_excluded(tuple(row.display.split("/")))
        ]
        fresh = [
            f for f in listed if f.native not in self._stored and not target.is_excluded(f.path)
        ]
        if not vanished or not fresh:
            return
        store, claim = self.ctx.store, self.claim
        holds = {
            f.native: Counter(
                r.extra.get("fingerprint") or r.key
                for r in source.messages(f)
                if isinstance(r, MessageRecord)
            )
            for f in fresh
        }
        landing = Counter(row.target_folder_id for row in self._stored.values())
        renamed = 0
        for row in sorted(vanished, key=lambda r: r.display):  # a parent before its subfolders
            if not fresh or landing[row.target_folder_id] > 1:
                continue  # another source folder lands in that target folder: not ours to rename
            had = changes.identities_of(store, row.id)
            best = max(fresh, key=lambda f: sum((had & holds[f.native]).values()))
            if 2 * sum((had & holds[best.native]).values()) < max(sum(had.values()), 1):
                continue
            self._preflight()
            old = self._tfolder_of_row(row)
            done = self._retry(
                partial(target.rename_folder, self.mailbox, old, best.path, best.role)
            )
            crashpoints.reached("rename")
            if done is None:
                continue
            tfolder, moved = done
            changes.rename_folder(
                store,
                claim,
                row.id,
                best.native,
                best.display,
                str(best.role),
                tfolder.id,
                tfolder.display,
            )
            changes.retarget(
                store, claim, {k: v for k, v in moved.items() if k != row.target_folder_id}
            )
            self.ctx.progress.note(
                f"{self.outcome.address}: folder {row.display} was renamed {best.display} in the "
                f"source; its target folder {old.display!r} is now {tfolder.display!r}"
            )
            fresh.remove(best)
            renamed += 1
        if renamed:
            self.outcome.changes["folders renamed"] += renamed
            self._stored = {f.native: f for f in ledger.folders(store, claim.account_id)}

    # --- flags ---------------------------------------------------------------------------
    def _tfolder_of_row(self, row: StoredFolder) -> TargetFolder:
        return TargetFolder(
            row.target_folder_id or "", tuple((row.target_path or row.display).split("/"))
        )

    def _carry_flags(
        self,
        folder: FolderInfo | None,
        folder_id: int,
        tfolder: TargetFolder,
        found: Sequence[tuple[str, str, Flags]],
    ) -> None:
        """Carry the flag changes users made in the source since the last pass: per message,
        only what differs between the flags the target was last given and the source's now
        ((key, flags last given, flags now)). Recorded as given once the target took them; a
        message the target no longer holds (a user moved or deleted it there) is recorded too:
        there is nothing to carry it to."""
        target = self.ctx.target
        if not found or not isinstance(target, CarriesChanges) or not tfolder.id:
            return
        self._preflight()
        store, claim = self.ctx.store, self.claim
        failed = 0
        for start in range(0, len(found), FLAG_BATCH):
            self._check_stop()
            part = found[start : start + FLAG_BATCH]
            ids = ledger.done_target_ids(store, folder_id, [key for key, _, _ in part])
            wanted = [
                (key, Flags.from_token(before), after)
                for key, before, after in part
                if ids.get(key, "?") != "?"
            ]
            asked = [FlagChange(ids[key], before, after) for key, before, after in wanted]
            if not asked:
                continue
            answers = self._retry(partial(target.update_flags, self.mailbox, tfolder, asked))
            given: list[tuple[str, str]] = []
            for (key, before, after), error in zip(wanted, answers, strict=True):
                if error is None:
                    self.outcome.changes.update(delta.flag_kinds(before, after))
                elif getattr(error, "reason", None) != NOT_FOUND:
                    failed += 1
                    continue
                given.append((key, after.token()))
            changes.record_flags(store, claim, folder_id, given)
        if failed:
            where = folder.display if folder is not None else tfolder.display
            self.ctx.progress.note(
                f"{self.outcome.address}: {failed} flag change(s) in {where} could not be carried "
                "to the target; the next pass tries again"
            )

    # --- the end of the pass -------------------------------------------------------------
    def _target_of(self, folder_id: int) -> TargetFolder | None:
        for row in self._stored.values():
            if row.id == folder_id:
                ensured = self._ensured.get(row.native)
                return ensured or (self._tfolder_of_row(row) if row.target_folder_id else None)
        return None

    def _reconcile(self) -> None:
        """Pair what went from folders with what arrived in others: moves; the rest is new mail
        (uploaded) and deletions."""
        if not self._gone and not self._held:
            return
        by_identity: dict[str, list[Placed]] = defaultdict(list)
        for row in self._gone:
            by_identity[row.identity].append(row)
        moves: list[tuple[Placed, Held]] = []
        uploads: list[Held] = []
        for held in self._held:
            rows = by_identity.get(held.identity)
            if not rows:
                uploads.append(held)
                continue
            # the same key first (Maildir and mbox keep it), else the oldest
            pick = next((r for r in rows if r.key == held.record.key), rows[0])
            rows.remove(pick)
            moves.append((pick, held))
        uploads.extend(self._move(moves))
        self._upload_held(uploads)
        self._delete([row for rows in by_identity.values() for row in rows])

    def _upload_held(self, held: Sequence[Held]) -> None:
        """New messages that were held in case they had moved: the normal chunk protocol."""
        by_folder: dict[int, list[Held]] = defaultdict(list)
        for h in held:
            by_folder[h.folder_id].append(h)
        run = self.ctx.plan.run
        for folder_id, items in by_folder.items():
            folder = items[0].folder
            tfolder = self._ensure(folder)
            chunk: list[MessageRecord] = []
            size = 0
            for h in items:
                if chunk and (
                    len(chunk) >= run.chunk_messages or size + h.record.size > run.chunk_bytes
                ):
                    self._chunk(folder, folder_id, tfolder, chunk)
                    chunk, size = [], 0
                chunk.append(h.record)
                size += h.record.size
            if chunk:
                self._chunk(folder, folder_id, tfolder, chunk)

    def _move(self, moves: Sequence[tuple[Placed, Held]]) -> list[Held]:
        """Carry moves to the target: each group of messages from one target folder to another
        is announced, moved, and recorded; messages whose item the target no longer has are
        returned, to be uploaded as new."""
        if not moves:
            return []
        store, claim = self.ctx.store, self.claim
        groups: dict[tuple[str, str], list[tuple[Placed, Held, TargetFolder, TargetFolder]]] = (
            defaultdict(list)
        )
        local: list[Moved] = []
        flags_after: list[tuple[Placed, Held]] = []
        for row, held in moves:
            source = self._target_of(row.folder_id)
            dest = self._ensure(held.folder)
            if source is None or not row.target_id or row.target_id == "?" or source.id == dest.id:
                # the same target folder (two source folders land in one, or a new key in the
                # same folder): only the ledger changes
                local.append(self._moved(row, held, row.target_id))
                flags_after.append((row, held))
            else:
                groups[(source.id, dest.id)].append((row, held, source, dest))
        changes.record_moves(store, claim, local)
        self.outcome.changes["moved"] += sum(
            1 for row, held in flags_after if row.folder_id != held.folder_id
        )
        again: list[Held] = []
        for members in groups.values():
            for start in range(0, len(members), MOVE_BATCH):
                self._check_stop()
                moved, lost = self._move_group(members[start : start + MOVE_BATCH])
                flags_after.extend(moved)
                again.extend(lost)
        self._flags_after_move(flags_after)
        return again

    def _moved(self, row: Placed, held: Held, target_id: str | None) -> Moved:
        return Moved(
            row.id,
            row.folder_id,
            held.folder_id,
            held.record.key,
            held.record.extra.get("fingerprint"),
            row.tag,
            target_id,
        )

    def _move_group(
        self, members: Sequence[tuple[Placed, Held, TargetFolder, TargetFolder]]
    ) -> tuple[list[tuple[Placed, Held]], list[Held]]:
        target = self.ctx.target
        assert isinstance(target, CarriesChanges)
        store, claim = self.ctx.store, self.claim
        self._preflight()
        source, dest = members[0][2], members[0][3]
        ids = [row.target_id or "" for row, _, _, _ in members]
        facts = self._retry(lambda: target.prepare_move(self.mailbox, source, dest, ids))
        changes.announce(
            store,
            claim,
            [
                (
                    row.id,
                    {
                        "op": "move",
                        "to": held.folder_id,
                        "key": held.record.key,
                        "fingerprint": held.record.extra.get("fingerprint"),
                        "from_target": [source.id, source.display],
                        "to_target": [dest.id, dest.display],
                        "facts": facts,
                    },
                )
                for row, held, _, _ in members
            ],
        )
        crashpoints.reached("announce_move")
        try:
            answers: dict[str, Any] = target.move(self.mailbox, source, dest, ids)
        except MigratorError as exc:
            # the outcome is unknown: ask where the items are rather than moving again
            self.ctx.progress.note(
                f"{self.outcome.address}: a move to {dest.display!r} broke off ({exc.message}); "
                "looking for the messages there"
            )
            answers = self._locate(source, dest, [row for row, _, _, _ in members], facts)
        crashpoints.reached("move")
        moved: list[tuple[Placed, Held]] = []
        recorded: list[Moved] = []
        lost: list[Held] = []
        forgotten: list[tuple[int, int, str]] = []
        unsettled: list[int] = []
        for row, held, _, _ in members:
            answer = answers.get(row.target_id or "")
            if isinstance(answer, str):
                recorded.append(self._moved(row, held, answer))
                moved.append((row, held))
            elif answer is None:
                forgotten.append((row.id, row.folder_id, MessageState.DONE))
                lost.append(held)
            else:
                unsettled.append(row.id)
        changes.record_moves(store, claim, recorded)
        changes.forget(store, claim, forgotten)
        changes.settle(store, claim, unsettled)
        self.outcome.changes["moved"] += len(recorded)
        if lost:
            self.ctx.progress.note(
                f"{self.outcome.address}: {len(lost)} moved message(s) were no longer in "
                f"{source.display!r} in the target (moved or deleted there): sent again to their "
                "new folder"
            )
        if unsettled:
            raise PermanentError(
                f"{self.outcome.address}: {len(unsettled)} message(s) could not be moved from "
                f"{source.display!r} to {dest.display!r} in the target",
                reason=Reason.MOVE_FAILED,
                hint="the next run tries again; if it keeps failing, look at the target folder",
            )
        return moved, lost

    def _locate(
        self,
        source: TargetFolder,
        dest: TargetFolder,
        rows: Sequence[Placed],
        facts: dict[str, Any],
    ) -> dict[str, str | None]:
        target = self.ctx.target
        assert isinstance(target, CarriesChanges)
        taken = ledger.target_ids(self.ctx.store, self.claim.account_id, dest.id)
        asked = {row.target_id: row.tag for row in rows if row.target_id}
        found: dict[str, str | None] = self._retry(
            lambda: target.locate_moved(self.mailbox, source, dest, asked, facts, taken)
        )
        return found

    def _flags_after_move(self, moved: Sequence[tuple[Placed, Held]]) -> None:
        """A moved message whose flags changed too: carried on its new item."""
        by_folder: dict[int, list[tuple[str, str, Flags]]] = defaultdict(list)
        folders: dict[int, FolderInfo] = {}
        for row, held in moved:
            token = held.record.flags.token()
            if row.flags is None:
                changes.record_flags(
                    self.ctx.store, self.claim, held.folder_id, [(held.record.key, token)]
                )
            elif token != row.flags:
                by_folder[held.folder_id].append((held.record.key, row.flags, held.record.flags))
                folders[held.folder_id] = held.folder
        for folder_id, found in by_folder.items():
            self._carry_flags(
                folders[folder_id], folder_id, self._ensure(folders[folder_id]), found
            )

    def _delete(self, rows: Sequence[Placed]) -> None:
        """Messages gone from the source and not moved: deleted in the target ("mirror"), or
        kept there and reported ("keep"). A pass that would delete more than the plan's
        deletion_limit of the account's messages deletes none and stops the account."""
        if not rows:
            return
        store, claim = self.ctx.store, self.claim
        run = self.ctx.plan.run
        if run.deletions == "keep":
            changes.mark_removed(store, claim, [row.id for row in rows])
            self.outcome.changes["kept"] += len(rows)
            return
        share = 100.0 * len(rows) / max(self._done_before, 1)
        if (
            len(rows) > DELETION_FLOOR
            and share > run.deletion_limit
            and not self.ctx.allow_deletions
        ):
            raise PermanentError(
                f"{self.outcome.address}: this pass would delete {len(rows):,} of the account's "
                f"{self._done_before:,} migrated messages ({share:.0f} %), more than the plan's "
                f"deletion_limit of {run.deletion_limit} %; nothing was deleted",
                reason=Reason.DELETION_LIMIT,
                hint="check the source mailbox (a disk not mounted? a folder renamed or removed "
                "by hand?); if the deletions are right, run again with `migrator run "
                "--allow-deletions --account ADDR`",
            )
        target = self.ctx.target
        by_target: dict[str, list[Placed]] = defaultdict(list)
        unsent: list[tuple[int, int, str]] = []
        for row in rows:
            tfolder = self._target_of(row.folder_id)
            if (
                tfolder is None
                or not row.target_id
                or row.target_id == "?"
                or not isinstance(target, CarriesChanges)
            ):
                unsent.append(
                    (row.id, row.folder_id, MessageState.DONE)
                )  # no item we could name: nothing to delete
            else:
                by_target[tfolder.id].append(row)
        changes.forget(store, claim, unsent)
        for members in by_target.values():
            tfolder = self._target_of(members[0].folder_id)
            assert tfolder is not None and isinstance(target, CarriesChanges)
            self._preflight()
            changes.announce(
                store,
                claim,
                [
                    (row.id, {"op": "delete", "target": [tfolder.id, tfolder.display]})
                    for row in members
                ],
            )
            crashpoints.reached("announce_delete")
            ids = [row.target_id or "" for row in members]
            self._retry(partial(target.delete, self.mailbox, tfolder, ids))
            crashpoints.reached("delete")
            changes.forget(
                store, claim, [(row.id, row.folder_id, MessageState.DONE) for row in members]
            )
        self.outcome.changes["deleted"] += len(rows)

    # --- what a stopped pass left --------------------------------------------------------
    def _resolve_pending(self) -> None:
        """Moves and deletions announced by a pass that stopped before it recorded them: a
        deletion is done again (exact ids; an item already gone is fine); a move is looked for
        in its destination: found, it is recorded as done; not found, it did not happen and
        the announcement is dropped (this pass moves it again if it is still moved)."""
        pending = changes.pending(self.ctx.store, self.claim.account_id)
        target = self.ctx.target
        if not pending or not isinstance(target, CarriesChanges):
            return
        self._preflight()
        store, claim = self.ctx.store, self.claim
        deletions: dict[tuple[str, str], list[Placed]] = defaultdict(list)
        moves: dict[tuple[str, str, str, str], list[Placed]] = defaultdict(list)
        for row in pending:
            op = row.pending or {}
            if op.get("op") == "delete":
                tid, tpath = op["target"]
                deletions[(tid, tpath)].append(row)
            elif op.get("op") == "move":
                (sid, spath), (did, dpath) = op["from_target"], op["to_target"]
                moves[(sid, spath, did, dpath)].append(row)
        for (tid, tpath), rows in deletions.items():
            tfolder = TargetFolder(tid, tuple(tpath.split("/")))
            ids = [row.target_id or "" for row in rows if row.target_id]
            self._retry(partial(target.delete, self.mailbox, tfolder, ids))
            changes.forget(
                store, claim, [(row.id, row.folder_id, MessageState.DONE) for row in rows]
            )
        for (sid, spath, did, dpath), rows in moves.items():
            source, dest = (
                TargetFolder(sid, tuple(spath.split("/"))),
                TargetFolder(did, tuple(dpath.split("/"))),
            )
            facts = dict((rows[0].pending or {}).get("facts") or {})
            found = self._locate(source, dest, rows, facts)
            done, undone = [], []
            for row in rows:
                new = found.get(row.target_id or "")
                op = row.pending or {}
                if new:
                    done.append(
                        Moved(
                            row.id,
                            row.folder_id,
                            int(op["to"]),
                            str(op["key"]),
                            op.get("fingerprint"),
                            row.tag,
                            new,
                        )
                    )
                else:
                    undone.append(row.id)
            changes.record_moves(store, claim, done)
            changes.settle(store, claim, undone)
            self.outcome.changes["moved"] += len(done)
        self.ctx.progress.note(
            f"{self.outcome.address}: {len(pending)} move(s) and deletion(s) from an interrupted "
            "run settled"
        )
