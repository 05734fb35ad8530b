"""The journal: every action written and fsynced before it is made, and marked after.

Undo trusts only what an apply of this user wrote: the entries that say what to reverse
are signed with the user's key (see ``signing``).
"""

from __future__ import annotations

import hmac
import json
import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from bienc_cli import __version__
from bienc_cli.actions.formats import FORMAT_VERSION, now, real, stored
from bienc_cli.actions.fs import sync_folder
from bienc_cli.actions.signing import key_path, mac, signing_key
from bienc_cli.errors import StorageError, UsageError

if TYPE_CHECKING:
    from bienc_cli.actions.plan import Plan

JOURNAL_FORMAT = "bienc-dedup-journal"


class Journal:
    """An append-only JSON Lines log, fsynced after every entry.

    Entries: ``begin`` (one per apply run, with the plan's roots and where files go), ``do``
    (an action about to be made, with ``seq``), then ``done``, ``failed`` or, after an undo,
    ``undone`` for that ``seq``. An apply's ``begin`` and every ``do`` carry an HMAC made with
    the user's key (``mac``): undo reverses only what an apply wrote.
    """

    def __init__(self, path: Path, fh: TextIO, next_seq: int, run: str, key: bytes | None):
        self.path = path
        self.fh = fh
        self.next_seq = next_seq
        self.run = run
        self.key = key

    @classmethod
    def open(
        cls, path: Path, plan: Plan | None, action: str, dest_root: Path | None = None
    ) -> Journal:
        existed = path.exists()
        next_seq = (
            1 + max((e.get("seq", 0) for e in read_journal(path)), default=0) if existed else 1
        )
        key = signing_key(create=True) if plan is not None else None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fh = open(path, "a", encoding="utf-8")
        except OSError as exc:
            raise StorageError(f"cannot write the journal {path}: {exc.strerror}") from exc
        journal = cls(path, fh, next_seq, uuid.uuid4().hex, key)
        begin: dict[str, Any] = {
            "op": "begin",
            "format": JOURNAL_FORMAT,
            "format_version": FORMAT_VERSION,
            "bienc_version": __version__,
            "at": now(),
            "action": action,
            "plan": str(plan.path) if plan and plan.path else None,
        }
        if plan is not None:
            begin |= {
                "run": journal.run,
                "plan_id": plan.plan_id,
                "roots": plan.roots,
                "resolved_roots": plan.resolved_roots,
                "dest_root": str(dest_root),
            }
        journal._write(journal._signed(begin))
        if not existed:
            sync_folder(path.parent)
        return journal

    def _signed(self, entry: dict[str, Any]) -> dict[str, Any]:
        return entry if self.key is None else entry | {"mac": _entry_mac(self.key, entry)}

    def intent(self, entry: dict[str, Any]) -> int:
        seq = self.next_seq
        self.next_seq += 1
        self._write(self._signed({"op": "do", "seq": seq, "run": self.run, **entry}))
        return seq

    def record(self, op: str, seq: int) -> None:
        self._write({"op": op, "seq": seq})

    def _write(self, entry: dict[str, Any]) -> None:
        try:
            self.fh.write(json.dumps(stored(entry), ensure_ascii=False) + "\n")
            self.fh.flush()
            os.fsync(self.fh.fileno())
        except OSError as exc:
            raise StorageError(
                f"cannot write the journal {self.path}: {exc.strerror}; stopped before the "
                "next action"
            ) from exc

    def close(self) -> None:
        self.fh.close()


def read_journal(path: Path) -> list[dict[str, Any]]:
    """The journal's entries; a last line cut short by a crash is ignored."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise UsageError(f"no journal at {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read the journal {path}: {exc}") from exc
    entries = []
    for number, line in enumerate(lines, 1):
        try:
            entry = real(json.loads(line))
        except ValueError:
            if number == len(lines):
                break  # the write a crash interrupted: its action was never made
            raise UsageError(f"the journal {path} is damaged at line {number}") from None
        if not isinstance(entry, dict):
            raise UsageError(f"the journal {path} is damaged at line {number}")
        entries.append(entry)
    begins = [e for e in entries if e.get("op") == "begin"]
    if not begins or begins[0].get("format") != JOURNAL_FORMAT:
        raise UsageError(f"{path} is not a bienc dedup journal")
    return entries


def _entry_mac(key: bytes, entry: dict[str, Any]) -> str:
    return mac(key, "journal", {k: v for k, v in entry.items() if k != "mac"})


def verified_runs(entries: list[dict[str, Any]], path: Path) -> dict[str, dict[str, Any]]:
    """The journal's apply runs by id, after checking that bienc wrote every ``do`` entry
    and the ``begin`` of its run as they are. UsageError (nothing restored) if not."""
    try:
        key = signing_key(create=False)
    except FileNotFoundError:
        raise UsageError(
            f"cannot check that bienc wrote the journal {path}: there is no signing key at "
            f"{key_path()} (a journal is undone by the user who applied the plan); nothing "
            "was restored"
        ) from None

    def signed(entry: dict[str, Any]) -> bool:
        return hmac.compare_digest(str(entry.get("mac", "")), _entry_mac(key, entry))

    runs = {e.get("run"): e for e in entries if e.get("op") == "begin" and "run" in e and signed(e)}
    for entry in entries:
        if entry.get("op") != "do":
            continue
        if not signed(entry) or entry.get("run") not in runs:
            raise UsageError(
                f"the journal {path} holds an action bienc did not record as it is (seq "
                f"{entry.get('seq')}, {entry.get('path')}): it was edited, or written by another "
                "user or an older bienc; undo refused, nothing was restored"
            )
        run = runs[entry["run"]]
        if entry.get("dest_root") != run.get("dest_root") or entry.get("action") != run.get(
            "action"
        ):
            raise UsageError(f"the journal {path} is inconsistent at seq {entry.get('seq')}")
    return runs
