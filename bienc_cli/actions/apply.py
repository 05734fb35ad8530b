"""`bienc dedup` actions on files: the plan, applying it safely, the journal, and undo.

The rules, each enforced here (and tested in tests/test_actions.py):

- Nothing changes without an explicit action, and ``dry_run`` changes nothing at all.
- A keeper is never acted on, and a member is acted on only while its keeper still exists with
  the bytes recorded in the plan: bienc never removes the last copy of anything.
- Only files inside the plan's roots are acted on, never one under a reference folder, and
  never one whose bytes changed since it was planned (sha256 recorded in the plan).
- The roots are bienc's, not the plan file's: a plan carries an HMAC, made with a key private
  to the user (``signing_key``), over its roots, reference folders, action and destination,
  and one over each file entry. A reviewed plan may lose entries (that is how a person leaves
  files alone) but not gain or change any. Journals are signed the same way, so undo only
  reverses actions an apply of this user recorded.
- Every path an action touches is checked after resolving symlinks and ``..``: a member (and,
  on undo, the place it goes back to) inside the roots as they resolved when planned; a
  destination inside ``--to`` or the trash, which must be a folder of its own, not a link.
- Every action is written to the journal and fsynced *before* it is made, and marked done
  after. ``delete`` moves a file to a trash folder beside the journal instead of unlinking it,
  and ``hardlink``/``symlink`` keep the replaced file there too, so `--undo` restores every
  file byte for byte. Undo reads the file system, not only the journal: an action cut short by
  a crash is recognised and reversed (or found never to have happened).
- Applying a plan twice does nothing the second time: moved files are gone, links already
  point at their keeper.

Applying is this module; the plan and its signatures are in ``plan`` and ``signing``, the
path rules in ``paths``, the journal in ``journal``, undo in ``undo``.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

from bienc_cli.actions.fs import (
    file_sha256,
    free_name,
    missing_folders,
    move_file,
    same_file,
    sync_folder,
)
from bienc_cli.actions.journal import Journal
from bienc_cli.actions.paths import (
    base_folder,
    inside_resolved,
    journal_for,
    relative,
    resolved,
    trash_for,
    within_roots,
)
from bienc_cli.actions.plan import Plan, PlannedFile, check_action
from bienc_cli.actions.report import ActionReport, Outcome
from bienc_cli.errors import UsageError
from bienc_cli.util.paths import is_under


def apply_plan(
    plan: Plan,
    action: str,
    *,
    to: str | None = None,
    journal: Path | None = None,
    dry_run: bool = False,
) -> ActionReport:
    """Carry out ``action`` on every member of the plan that is still safe to act on."""
    check_action(action, to)
    if action == "move":
        to = os.path.abspath(to)  # type: ignore[arg-type]
    _check_plan(plan)
    if journal is None:
        if plan.path is None:
            raise UsageError("give --journal FILE: this plan was not read from a file")
        journal = journal_for(plan.path)
    journal = Path(journal).absolute()
    trash = trash_for(journal)
    report = ActionReport(
        action, dry_run, journal=str(journal), plan=str(plan.path) if plan.path else None
    )
    if action in ("delete", "hardlink", "symlink"):
        report.trash = str(trash)
        _check_own_folder(trash)
    dest_root = Path(to) if action == "move" else trash  # type: ignore[arg-type]
    base = base_folder(plan.roots)
    # A keeper may be a symlink to a file that is another group's member: keep that file.
    keeper_files = {os.path.realpath(g.keeper.path) for g in plan.groups}
    writer: Journal | None = None
    try:
        for group in plan.groups:
            keeper = group.keeper
            problem = _keeper_problem(keeper)
            for member in group.members:
                outcome = Outcome(member.path, action, "skipped", keeper=keeper.path)
                report.outcomes.append(outcome)
                if problem:
                    outcome.reason = f"keeper {problem}"
                    continue
                state = _member_state(member, keeper, plan)
                if state is None and not os.path.islink(member.path):
                    if os.path.realpath(member.path) in keeper_files:
                        state = "skipped", "a keeper is a link to it"
                if state:
                    outcome.status, outcome.reason = state
                    continue
                if action == "move":
                    dest = _destination(member.path, base, dest_root)
                    if os.path.lexists(dest):
                        outcome.reason = f"{dest} already exists"
                        continue
                else:  # delete, or a link in its place: the original goes to the trash
                    dest = free_name(trash / relative(member.path, base))
                if not is_under(resolved(str(dest)), os.path.realpath(dest_root)):
                    outcome.reason = f"{dest} leads out of {dest_root} through a link"
                    continue
                outcome.dest = str(dest)
                if dry_run:
                    outcome.status = "would"
                    continue
                if writer is None:
                    writer = Journal.open(journal, plan, action, dest_root)
                _act(writer, action, member, keeper, dest, dest_root, outcome)
    finally:
        if writer is not None:
            writer.close()
    return report


def report_left_out(report: ActionReport, plan: Plan) -> None:
    """Add the files ``plan`` left out (changed since indexed...) as skipped, when the plan
    was made in this run: they are files the action was asked for and did not reach."""
    report.outcomes += [
        Outcome(x["path"], report.action, "skipped", reason=x["reason"]) for x in plan.left_out
    ]


def _check_plan(plan: Plan) -> None:
    """Refuse plans (perhaps edited by hand) in which a keeper could lose its last copy."""
    keepers = {resolved(g.keeper.path) for g in plan.groups}
    seen: set[str] = set()
    for group in plan.groups:
        for member in group.members:
            key = resolved(member.path)
            if key in keepers:
                raise UsageError(
                    f"the plan lists {member.path} both as a keeper and as a duplicate; "
                    "a file must be one or the other"
                )
            if key in seen:
                raise UsageError(f"the plan lists {member.path} twice")
            seen.add(key)
    if not plan.roots:
        raise UsageError("the plan names no roots, so no file is inside them")


def _check_own_folder(folder: Path) -> None:
    """The trash is bienc's own: a real folder (or none yet), never a link to elsewhere."""
    if os.path.islink(folder) or (os.path.lexists(folder) and not os.path.isdir(folder)):
        raise UsageError(
            f"{folder} is a link or not a folder; bienc keeps deleted and replaced files only "
            "in a folder of its own: move it away, or give another --journal"
        )


def _keeper_problem(keeper: PlannedFile) -> str:
    try:
        if not os.path.isfile(keeper.path):
            return "is gone" if not os.path.lexists(keeper.path) else "is not a regular file"
        if file_sha256(keeper.path) != keeper.sha256:
            return "changed since the plan"
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    return ""


def _member_state(member: PlannedFile, keeper: PlannedFile, plan: Plan) -> tuple[str, str] | None:
    """(status, reason) when the member must not be acted on, None when it may be."""
    path = member.path
    if not os.path.lexists(path):
        return "already", "gone"
    if same_file(path, keeper.path):
        return "already", "is its keeper's file (a link to it)"
    if not within_roots(path, plan.roots):
        return "skipped", "outside the roots"
    if not inside_resolved(path, plan.resolved_roots or ()):
        return "skipped", f"outside the roots: it resolves to {resolved(path)}"
    if any(is_under(resolved(path), os.path.realpath(r)) for r in plan.reference):
        return "skipped", "under a reference folder"
    try:
        if not os.path.isfile(path):
            return "skipped", "not a regular file"
        if file_sha256(path) != member.sha256:
            return "skipped", "changed since the plan"
    except OSError as exc:
        return "skipped", f"cannot be read ({exc.strerror})"
    return None


def _destination(path: str, base: str, to: Path) -> Path:
    return to / relative(path, base)


def _act(
    writer: Journal,
    action: str,
    member: PlannedFile,
    keeper: PlannedFile,
    dest: Path,
    dest_root: Path,
    outcome: Outcome,
) -> None:
    src = member.path
    entry: dict[str, Any] = {
        "action": action,
        "path": src,
        "dest": str(dest),
        "dest_root": str(dest_root),  # --to or the trash
        # the folders this action is about to make there: the only ones undo may remove
        "folders": missing_folders(dest.parent, dest_root, including_root=action != "move"),
        "sha256": member.sha256,
        "keeper": keeper.path,
    }
    if action in ("hardlink", "symlink"):
        entry["tmp"] = os.path.join(os.path.dirname(src), f".bienc-link-{uuid.uuid4().hex[:12]}")
    seq = writer.intent(entry)
    try:
        if action in ("move", "delete"):
            move_file(src, dest)
        else:
            _replace_with_link(action, src, keeper.path, dest, entry["tmp"])
    except OSError as exc:
        writer.record("failed", seq)
        outcome.status, outcome.reason = "failed", exc.strerror or str(exc)
        return
    writer.record("done", seq)
    outcome.status = "done"


def _replace_with_link(action: str, src: str, keeper: str, dest: Path, tmp: str) -> None:
    """Keep the original in the trash, and put a link to the keeper in its place."""
    if action == "hardlink":
        os.link(keeper, tmp)  # fails across file systems: nothing has changed yet
    else:
        os.symlink(os.path.relpath(keeper, os.path.dirname(src)), tmp)
    try:
        move_file(src, dest)
    except OSError:
        os.unlink(tmp)
        raise
    try:
        move_file(tmp, Path(src))  # src is missing only between these two moves; never replaced
    except OSError:
        move_file(str(dest), Path(src))  # put the original back before reporting the failure
        os.unlink(tmp)
        raise
    sync_folder(Path(src).parent)
