"""The source contract, checked against every source kind on the same sample mailbox.

Each kind gets the project's sample mailbox (every hard case) in its own format; the source must
give back the same folders, roles, messages (byte for byte, as the format stores them), flags,
keywords and dates, with keys that are unique, stable across runs and across flag changes, and
without reading bodies while listing.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime

from migrator.adapters.sources.base import Source
from migrator.model.mail import Flags, FolderInfo, MessageRecord, SkippedMessage
from tests.fixtures.sources import *  # noqa: F403 - the source_case fixture
from tests.fixtures.sources import CHANGED_FLAGS, FLAG_CHANGE_TARGET, SourceCase

Seen = tuple[bytes, Flags, datetime | None]


def _norm(flags: Flags) -> Flags:
    return Flags(
        flags.seen,
        flags.answered,
        flags.flagged,
        flags.deleted,
        flags.draft,
        tuple(sorted(flags.keywords)),
    )


def _read(record: MessageRecord) -> bytes:
    with record.open() as stream:
        return stream.read()


def _records(source: Source, folder: FolderInfo) -> list[MessageRecord]:
    items = list(source.messages(folder))
    skipped = [i for i in items if isinstance(i, SkippedMessage)]
    assert not skipped, f"{folder.display}: unexpected skipped messages {skipped}"
    return [i for i in items if isinstance(i, MessageRecord)]


def _by_path(source: Source) -> dict[tuple[str, ...], FolderInfo]:
    return {f.path: f for f in source.folders()}


def _expected(case: SourceCase, path: tuple[str, ...]) -> Counter[Seen]:
    return Counter((case.stored(m), _norm(m.flags), m.internal_date) for m in case.mailbox[path])


def test_folders_have_decoded_paths_roles_counts_and_totals(source_case: SourceCase) -> None:
    with source_case.open() as source:
        folders = _by_path(source)
    assert set(folders) == set(source_case.mailbox)
    for path, folder in folders.items():
        assert folder.role == source_case.roles[path], path
        assert folder.problems == (), path
        msgs = source_case.mailbox[path]
        assert folder.message_count == len(msgs), path
        assert folder.byte_total == sum(len(source_case.stored(m)) for m in msgs), path
    assert len(source_case.mailbox[("INBOX",)]) >= 15  # the hard cases are really there


def test_messages_come_back_byte_for_byte_with_flags_and_dates(source_case: SourceCase) -> None:
    with source_case.open() as source:
        for path, folder in _by_path(source).items():
            got: Counter[Seen] = Counter()
            for record in _records(source, folder):
                data = _read(record)
                assert record.size == len(data), (path, record.key)
                got[(data, _norm(record.flags), record.internal_date)] += 1
            assert got == _expected(source_case, path), path


def test_empty_folder_lists_no_messages(source_case: SourceCase) -> None:
    with source_case.open() as source:
        folder = _by_path(source)[("Vacía",)]
        assert list(source.messages(folder)) == []
        assert (folder.message_count, folder.byte_total) == (0, 0)


def test_keys_are_unique_even_for_byte_identical_copies(source_case: SourceCase) -> None:
    with source_case.open() as source:
        for path, folder in _by_path(source).items():
            records = _records(source, folder)
            keys = [r.key for r in records]
            assert len(set(keys)) == len(keys), path
            assert all(k and isinstance(k, str) for k in keys)
        inbox = _records(source, _by_path(source)[("INBOX",)])
        twin = next(m.raw for m in source_case.mailbox[("INBOX",)] if m.name == "identical-1")
        twin_stored = next(
            source_case.stored(m)
            for m in source_case.mailbox[("INBOX",)]
            if m.name == "identical-1"
        )
        assert twin  # the sample really has the twin
        twins = [r.key for r in inbox if _read(r) == twin_stored]
        assert len(twins) == 2 and twins[0] != twins[1]


def _key_map(source: Source) -> dict[tuple[str, ...], dict[str, bytes]]:
    return {
        path: {r.key: _read(r) for r in _records(source, folder)}
        for path, folder in _by_path(source).items()
    }


def test_keys_are_stable_across_runs(source_case: SourceCase) -> None:
    with source_case.open() as first:
        before = _key_map(first)
    with source_case.open() as second:
        after = _key_map(second)
    assert before == after


def test_keys_survive_a_flag_change(source_case: SourceCase) -> None:
    folder_path, name = FLAG_CHANGE_TARGET
    with source_case.open() as source:
        keys_before = {p: set(m) for p, m in _key_map(source).items()}
        target = next(m for m in source_case.mailbox[folder_path] if m.name == name)
        stored_before = source_case.stored(target)
        inbox = _records(source, _by_path(source)[folder_path])
        target_key = next(r.key for r in inbox if _read(r) == stored_before)
    source_case.set_flags(folder_path, name, CHANGED_FLAGS)
    with source_case.open() as source:
        keys_after = {p: set(m) for p, m in _key_map(source).items()}
        inbox = _records(source, _by_path(source)[folder_path])
        changed = next(r for r in inbox if r.key == target_key)
        assert _norm(changed.flags) == _norm(CHANGED_FLAGS)
        updated = next(m for m in source_case.mailbox[folder_path] if m.name == name)
        assert _read(changed) == source_case.stored(updated)
    assert keys_before == keys_after


def test_listing_does_not_read_bodies(source_case: SourceCase) -> None:
    with source_case.open() as source:
        start = source_case.body_reads()
        listed = 0
        for folder in source.folders():
            listed += sum(1 for _ in source.messages(folder))
        during_listing = source_case.body_reads() - start
        assert listed == sum(len(m) for m in source_case.mailbox.values())
        assert during_listing <= source_case.listing_body_reads
        inbox = _records(source, _by_path(source)[("INBOX",)])
        _read(inbox[0])
        assert source_case.body_reads() - start > during_listing  # the counter does see reads


def test_open_streams_in_pieces_and_each_open_is_independent(source_case: SourceCase) -> None:
    with source_case.open() as source:
        inbox = _records(source, _by_path(source)[("INBOX",)])
        record = max(inbox, key=lambda r: r.size)
        whole = _read(record)
        first, second = record.open(), record.open()
        try:
            pieces = []
            while chunk := first.read(1000):
                assert len(chunk) <= 1000
                pieces.append(chunk)
                assert second.read(1) or True  # interleaved reads do not disturb each other
            assert b"".join(pieces) == whole
        finally:
            first.close()
            second.close()
        assert len(pieces) > 1
