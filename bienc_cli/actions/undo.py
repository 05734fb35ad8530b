"""`bienc dedup --undo`: reverse what a journal records, deciding from the disk what happened.

An action cut short by a crash is recognised and reversed, or found never to have happened.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from bienc_cli.actions.fs import move_file, same_bytes
from bienc_cli.actions.journal import Journal, read_journal, verified_runs
from bienc_cli.actions.paths import inside_resolved, resolved, trash_for
from bienc_cli.actions.report import ActionReport, Outcome
from bienc_cli.util.paths import is_under


def undo(journal: Path, *, dry_run: bool = False) -> ActionReport:
    """Reverse every action of the journal not undone yet, newest first.

    What to do is decided from the disk, whatever the journal says happened next (``done``,
    ``failed`` or nothing, after a crash): a file found at its destination with its recorded
    bytes, and nothing else in its old place, is put back. Only actions an apply of this
    user recorded are reversed (signed entries), only from below their trash or --to folder,
    and only into places inside the plan's roots as they resolved when it was made.
    """
    journal = Path(journal).absolute()
    entries = read_journal(journal)
    runs = verified_runs(entries, journal)
    undone = {e["seq"] for e in entries if e.get("op") == "undone"}
    todo = [e for e in entries if e.get("op") == "do" and e.get("seq") not in undone]
    report = ActionReport("restore", dry_run, journal=str(journal), trash=str(trash_for(journal)))
    writer: Journal | None = None
    try:
        for entry in reversed(todo):
            outcome = Outcome(entry["path"], "restore", "skipped", dest=entry.get("dest"))
            report.outcomes.append(outcome)
            verdict = _undo_verdict(entry, runs[entry["run"]])
            if verdict is not None:
                outcome.status, outcome.reason = verdict
                if outcome.status == "already" and not dry_run:
                    writer = writer or Journal.open(journal, None, "undo")
                    writer.record("undone", entry["seq"])
                continue
            if dry_run:
                outcome.status = "would"
                continue
            writer = writer or Journal.open(journal, None, "undo")
            try:
                _restore(entry)
            except OSError as exc:
                outcome.status, outcome.reason = "failed", exc.strerror or str(exc)
                continue
            writer.record("undone", entry["seq"])
            outcome.status = "done"
    finally:
        if writer is not None:
            writer.close()
    return report


def _undo_verdict(entry: dict[str, Any], run: dict[str, Any]) -> tuple[str, str] | None:
    """Why an entry cannot or need not be reversed; None when it should be."""
    src, dest, action = entry["path"], entry["dest"], entry["action"]
    if not inside_resolved(src, run.get("resolved_roots") or ()):
        return "skipped", f"outside the roots: {src} now resolves to {resolved(src)}"
    dest_root = entry["dest_root"]
    if not is_under(resolved(dest), os.path.realpath(dest_root)):
        return "skipped", f"{dest} now leads out of {dest_root} through a link; left alone"
    tmp = entry.get("tmp")
    if tmp is not None and (
        os.path.dirname(tmp) != os.path.dirname(src)
        or not os.path.basename(tmp).startswith(".bienc-link-")
    ):
        return "skipped", f"the journal's temporary name {tmp} is not bienc's"
    src_there, dest_there = os.path.lexists(src), os.path.lexists(dest)
    if not dest_there:
        if (
            src_there
            and not _is_link_to(src, entry["keeper"], action)
            and same_bytes(src, entry["sha256"])
        ):
            return "already", "in place (the action never happened)"
        where = "the trash" if action != "move" else "the --to folder"
        return "skipped", f"not found in {where} ({dest}); it was moved or removed since"
    if not same_bytes(dest, entry["sha256"]):
        return "skipped", f"{dest} changed since it was put there; restore it by hand"
    if src_there and not (
        action in ("hardlink", "symlink") and _is_link_to(src, entry["keeper"], action)
    ):
        return "skipped", f"a different file now exists at {src}; {dest} was left where it is"
    return None


def _restore(entry: dict[str, Any]) -> None:
    src, dest = entry["path"], Path(entry["dest"])
    if entry["action"] in ("hardlink", "symlink"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(entry["tmp"])  # left by a crash between making the link and placing it
        if os.path.lexists(src):
            os.unlink(src)  # the link to the keeper (checked by _undo_verdict)
    move_file(str(dest), Path(src))
    _remove_made_folders(entry)


def _is_link_to(path: str, keeper: str, action: str) -> bool:
    try:
        if action == "symlink":
            return os.path.islink(path) and os.path.samefile(path, keeper)
        if action == "hardlink":
            return not os.path.islink(path) and os.path.samefile(path, keeper)
    except OSError:
        return False
    return False


def _remove_made_folders(entry: dict[str, Any]) -> None:
    """Remove, innermost first, the folders the entry's action made, while empty (best
    effort): never a folder that was there before, never one outside its destination root."""
    root = os.path.realpath(entry["dest_root"])
    for folder in reversed(entry.get("folders") or []):
        if is_under(resolved(folder), root):
            with contextlib.suppress(OSError):
                os.rmdir(folder)
