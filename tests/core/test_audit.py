"""The audit trail in real central storage (a local folder): appended, linked, and every tampering found."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from tasks.core.audit import append_entry, read_history, verify_chain

MODEL = "fashion-cnn"


def entry_file(storage: Path, sequence: int) -> Path:
    return storage / "models" / MODEL / "audit" / f"{sequence:08d}.json"


def three_entries(storage: Path) -> None:
    append_entry(str(storage), MODEL, "promotion", "1", "no champion yet", who="deploy")
    append_entry(str(storage), MODEL, "promotion", "2", "non-inferior", "1", {"passed": True}, who="deploy")
    append_entry(str(storage), MODEL, "rollback", "1", "rollback by operator", "2", who="alice@ward")


def test_entries_link_to_the_one_before_and_the_intact_chain_verifies(tmp_path: Path) -> None:
    three_entries(tmp_path)
    entries = read_history(str(tmp_path), MODEL)
    assert [(e.sequence, e.event, e.version, e.previous_version) for e in entries] == [
        (1, "promotion", "1", None),
        (2, "promotion", "2", "1"),
        (3, "rollback", "1", "2"),
    ]
    assert entries[1].previous_hash == entries[0].hash and entries[2].previous_hash == entries[1].hash
    assert entries[1].evidence == {"passed": True} and entries[2].actor == "alice@ward"
    assert verify_chain(str(tmp_path), MODEL) == []


def test_a_modified_entry_is_reported(tmp_path: Path) -> None:
    three_entries(tmp_path)
    path = entry_file(tmp_path, 2)
    tampered = json.loads(path.read_text()) | {"reason": "approved by the board"}
    path.write_text(json.dumps(tampered))
    assert verify_chain(str(tmp_path), MODEL) == ["entry 2: its content no longer matches its hash: modified"]


def test_a_modified_entry_with_its_hash_recomputed_breaks_the_next_link(tmp_path: Path) -> None:
    from tasks.core.audit import AuditEntry

    three_entries(tmp_path)
    path = entry_file(tmp_path, 2)
    forged = AuditEntry.model_validate_json(path.read_text()).model_copy(update={"version": "3"})
    forged.hash = forged.content_hash()
    path.write_text(forged.model_dump_json())
    assert verify_chain(str(tmp_path), MODEL) == [
        "entry 3: does not link to the entry before it: one was changed or removed"
    ]


def test_a_deleted_entry_is_reported(tmp_path: Path) -> None:
    three_entries(tmp_path)
    entry_file(tmp_path, 2).unlink()
    problems = verify_chain(str(tmp_path), MODEL)
    assert "entry 2 missing before entry 3: deleted" in problems
    assert len(problems) == 2  # and the link of entry 3 is broken


def test_concurrent_writers_never_share_a_sequence_number(tmp_path: Path) -> None:
    def write(version: str) -> None:
        for _ in range(5):
            append_entry(str(tmp_path), MODEL, "refused", version, "kept out", who=f"writer {version}")

    writers = [threading.Thread(target=write, args=(str(n),)) for n in range(3)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    entries = read_history(str(tmp_path), MODEL)
    assert [e.sequence for e in entries] == list(range(1, 16))
    assert verify_chain(str(tmp_path), MODEL) == []
