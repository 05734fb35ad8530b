"""`bienc dedup` actions on files: the plan, applying it safely, the journal, and undo.

The rules, each enforced here (and tested in tests/test_actions.py):

- Nothing changes without an explicit action, and ``dry_run`` changes nothing at all.
- A keeper is never acted on, and a member is acted on only while its keeper still exists with
  the bytes recorded in the plan: bienc never removes the last copy of anything.
- Only files inside the plan's roots are acted on, never one under a reference folder, and
  never one whose bytes changed since it was planned (sha256 recorded in the plan).
- Every action is written to the journal and fsynced *before* it is made, and marked done
  after. ``delete`` moves a file to a trash folder beside the journal instead of unlinking it,
  and ``hardlink``/``symlink`` keep the replaced file there too, so `--undo` restores every
  file byte for byte. Undo reads the file system, not only the journal: an action cut short by
  a crash is recognised and reversed (or found never to have happened).
- Applying a plan twice does nothing the second time: moved files are gone, links already
  point at their keeper.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from bienc_cli import __version__
from bienc_cli.errors import StorageError, UsageError

if TYPE_CHECKING:
    from bienc_cli.dedup import Corpus, Detection

PLAN_FORMAT = "bienc-dedup-plan"
JOURNAL_FORMAT = "bienc-dedup-journal"
FORMAT_VERSION = 1
ACTIONS = ("move", "delete", "hardlink", "symlink")
STATE_DIR = ".bienc-dedup"  # default home of plans, journals and trash: hidden, so not indexed


# -- the plan --------------------------------------------------------------------------------


@dataclass
class PlannedFile:
    path: str  # absolute
    sha256: str  # of the bytes when the plan was made
    size: int
    similarity: float | None = None  # members: to the keeper
    match: str | None = None  # members: "exact" | "near"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path, "sha256": self.sha256, "size": self.size}
        if self.similarity is not None:
            out |= {"similarity": round(self.similarity, 4), "match": self.match}
        return out


@dataclass
class PlannedGroup:
    group: int
    keeper: PlannedFile
    members: list[PlannedFile]


@dataclass
class Plan:
    """Which files duplicate which, with their hashes: reviewed by a person, then applied."""

    roots: list[str]
    reference: list[str]
    groups: list[PlannedGroup]
    action: str | None = None
    to: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)  # threshold, keep, model ...
    left_out: list[dict[str, str]] = field(default_factory=list)  # {"path", "reason"}
    created_at: str = ""
    path: Path | None = None  # where it was written or read

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": PLAN_FORMAT,
            "format_version": FORMAT_VERSION,
            "bienc_version": __version__,
            "created_at": self.created_at,
            "review": "Delete a member, or a whole group, to leave those files alone; then run "
            "`bienc dedup --apply THIS_FILE --action ...`. Files whose bytes no longer match "
            "their sha256 are skipped, and so is every member of a group whose keeper changed.",
            "action": self.action,
            "to": self.to,
            "settings": self.settings,
            "roots": self.roots,
            "reference": self.reference,
            "groups": [
                {
                    "group": g.group,
                    "keeper": g.keeper.to_dict(),
                    "members": [m.to_dict() for m in g.members],
                }
                for g in self.groups
            ],
            "left_out": self.left_out,
        }


def file_sha256(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def build_plan(
    corpus: Corpus, detection: Detection, *, action: str | None = None, to: str | None = None
) -> Plan:
    """The plan for the file groups of ``detection`` (table rows are never in a plan).

    A file that changed since it was indexed (size or mtime) cannot be trusted to be what was
    compared: it is left out, and a group whose keeper changed is left out whole.
    """
    check_action(action, to)
    plan = Plan(
        roots=list(corpus.roots),
        reference=list(detection.options.reference),
        groups=[],
        action=action,
        to=os.path.abspath(to) if to else None,
        settings={
            "threshold": detection.options.threshold,
            "keep": detection.options.keep,
            "model": corpus.model,
        },
        created_at=_now(),
    )
    records = detection.records
    for number, group in enumerate(detection.groups, 1):
        keeper = records[group.keeper]
        if keeper.is_row:
            continue
        planned_keeper, problem = _planned(keeper.path, keeper.size, keeper.mtime_ns)
        if planned_keeper is None:
            plan.left_out += [
                {"path": records[m.index].path, "reason": f"its keeper {problem}"}
                for m in group.members
            ]
            continue
        members = []
        for member in group.members:
            record = records[member.index]
            planned, problem = _planned(record.path, record.size, record.mtime_ns)
            if planned is None:
                plan.left_out.append({"path": record.path, "reason": problem})
                continue
            if not within_roots(record.path, plan.roots):
                plan.left_out.append({"path": record.path, "reason": "outside the roots"})
                continue
            if _same_file(record.path, keeper.path):
                plan.left_out.append({"path": record.path, "reason": "is its keeper's file"})
                continue
            planned.similarity, planned.match = member.similarity, member.match
            members.append(planned)
        if members:
            plan.groups.append(PlannedGroup(number, planned_keeper, members))
    return plan


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _planned(path: str, size: int, mtime_ns: int) -> tuple[PlannedFile | None, str]:
    try:
        st = os.stat(path)
        if (st.st_size, st.st_mtime_ns) != (size, mtime_ns):
            return None, "changed since it was indexed (re-index, then plan again)"
        return PlannedFile(path, file_sha256(path), size), ""
    except FileNotFoundError:
        return None, "is gone since it was indexed"
    except OSError as exc:
        return None, f"cannot be read ({exc.strerror})"


def write_plan(plan: Plan, path: Path) -> None:
    """Write the plan atomically (a reader never sees half of it)."""
    path = Path(path)
    _atomic_write(path, json.dumps(plan.to_dict(), indent=2, ensure_ascii=False) + "\n")
    plan.path = path


def read_plan(path: Path) -> Plan:
    """A plan written by `bienc dedup --plan` (and perhaps edited). UsageError if it is not."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"no plan at {path}") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UsageError(f"cannot read the plan {path}: {exc}") from exc
    if not isinstance(data, dict) or data.get("format") != PLAN_FORMAT:
        raise UsageError(f"{path} is not a bienc dedup plan (make one with `bienc dedup --plan`)")
    if data.get("format_version") != FORMAT_VERSION:
        raise UsageError(
            f"{path} is a plan of format version {data.get('format_version')}; this bienc "
            f"reads version {FORMAT_VERSION}: make the plan again"
        )
    try:
        groups = [
            PlannedGroup(
                int(g["group"]),
                _file(g["keeper"]),
                [_file(m) for m in g["members"]],
            )
            for g in data["groups"]
        ]
        plan = Plan(
            roots=[str(r) for r in data["roots"]],
            reference=[str(r) for r in data.get("reference") or []],
            groups=groups,
            action=data.get("action"),
            to=data.get("to"),
            settings=dict(data.get("settings") or {}),
            left_out=list(data.get("left_out") or []),
            created_at=str(data.get("created_at", "")),
            path=path,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise UsageError(f"the plan {path} is damaged ({type(exc).__name__}: {exc})") from exc
    return plan


def _file(data: dict[str, Any]) -> PlannedFile:
    path = data["path"]
    if not isinstance(path, str) or not os.path.isabs(path):
        raise ValueError(f"path {path!r} is not absolute")
    return PlannedFile(
        path, str(data["sha256"]), int(data["size"]), data.get("similarity"), data.get("match")
    )


def check_action(action: str | None, to: str | None) -> None:
    if action is not None and action not in ACTIONS:
        raise UsageError(f"unknown --action {action!r}; choose one of {', '.join(ACTIONS)}")
    if action == "move" and not to:
        raise UsageError("--action move needs --to DIR (where the duplicates go)")
    if to and action != "move":
        raise UsageError("--to is only for --action move")


# -- where things go -------------------------------------------------------------------------


def root_folder(root: str) -> str:
    """The folder a root stands for: itself, a file's folder, a pattern's literal prefix."""
    import glob

    if glob.has_magic(root):
        parts = root.split(os.sep)
        literal = []
        for part in parts[:-1]:
            if glob.has_magic(part):
                break
            literal.append(part)
        return os.sep.join(literal) or os.sep
    return root if os.path.isdir(root) else os.path.dirname(root)


def base_folder(roots: Sequence[str]) -> str:
    """The folder moved files keep their tree relative to: the roots' common ancestor."""
    folders = [os.path.realpath(root_folder(r)) for r in roots] or [os.getcwd()]
    return os.path.commonpath(folders)


def within_roots(path: str, roots: Sequence[str]) -> bool:
    """Whether ``path`` (the link itself, not its target) is inside one of the roots."""
    import fnmatch
    import glob

    real = os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path))
    for root in roots:
        if glob.has_magic(root):
            folder = os.path.realpath(root_folder(root))
            if _inside(real, folder) and (
                fnmatch.fnmatch(path, root) or fnmatch.fnmatch(path, os.path.join(root, "*"))
            ):
                return True
            continue
        target = os.path.realpath(root)
        if os.path.isdir(target) or not os.path.lexists(root):
            if _inside(real, target) and real != target:
                return True
        elif real == os.path.join(os.path.realpath(os.path.dirname(root)), os.path.basename(root)):
            return True
    return False


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def default_plan_path() -> Path:
    """Where `--action` without `--plan` keeps its plan, journal and trash: a fresh folder
    ``.bienc-dedup/DATE-TIME/`` (nothing is created here)."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    folder = Path(STATE_DIR) / stamp
    suffix = 1
    while folder.exists():
        suffix += 1
        folder = Path(STATE_DIR) / f"{stamp}-{suffix}"
    return folder / "plan.json"


def journal_for(plan_path: Path) -> Path:
    """The default journal of a plan: ``PLAN.journal.jsonl`` beside it (``x.json`` ->
    ``x.journal.jsonl``)."""
    plan_path = Path(plan_path)
    return plan_path.with_name(plan_path.stem + ".journal.jsonl")


def trash_for(journal: Path) -> Path:
    """The trash folder of a journal: hidden, beside it (so `bienc index` skips it)."""
    journal = Path(journal)
    stem = journal.name.removesuffix(".jsonl").removesuffix(".journal")
    return journal.with_name(f".{stem}.trash")


# -- applying --------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What happened to one file."""

    path: str
    action: str  # move | delete | hardlink | symlink | restore
    status: str  # done | would | already | skipped | failed
    dest: str | None = None  # where the file went (move, delete: the trash)
    keeper: str | None = None
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "action": self.action,
            "status": self.status,
            "dest": self.dest,
            "keeper": self.keeper,
            "reason": self.reason,
        }


@dataclass
class ActionReport:
    action: str
    dry_run: bool
    outcomes: list[Outcome] = field(default_factory=list)
    journal: str | None = None
    trash: str | None = None
    plan: str | None = None

    def count(self, status: str) -> int:
        return sum(o.status == status for o in self.outcomes)

    @property
    def problems(self) -> int:
        return self.count("skipped") + self.count("failed")

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "dry_run": self.dry_run,
            "plan": self.plan,
            "journal": self.journal,
            "trash": self.trash,
            "counts": {s: self.count(s) for s in ("done", "would", "already", "skipped", "failed")},
            "files": [o.to_dict() for o in self.outcomes],
        }


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
    base = base_folder(plan.roots)
    # A keeper may be a symlink to a file that is another group's member: keep that file.
    keeper_files = {os.path.realpath(g.keeper.path) for g in plan.groups}
    writer: _Journal | None = None
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
                    dest = _destination(member.path, base, Path(to))  # type: ignore[arg-type]
                    if os.path.lexists(dest):
                        outcome.reason = f"{dest} already exists"
                        continue
                else:  # delete, or a link in its place: the original goes to the trash
                    dest = _free_name(trash / _relative(member.path, base))
                outcome.dest = str(dest)
                if dry_run:
                    outcome.status = "would"
                    continue
                if writer is None:
                    writer = _Journal.open(journal, plan, action)
                dest_root = Path(to) if action == "move" else trash  # type: ignore[arg-type]
                _act(writer, action, member, keeper, dest, dest_root, outcome)
    finally:
        if writer is not None:
            writer.close()
    return report


def _check_plan(plan: Plan) -> None:
    """Refuse plans (perhaps edited by hand) in which a keeper could lose its last copy."""
    keepers = {_key(g.keeper.path) for g in plan.groups}
    seen: set[str] = set()
    for group in plan.groups:
        for member in group.members:
            key = _key(member.path)
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


def _key(path: str) -> str:
    return os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path))


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
    if _same_file(path, keeper.path):
        return "already", "is its keeper's file (a link to it)"
    if not within_roots(path, plan.roots):
        return "skipped", "outside the roots"
    if any(_inside(_key(path), os.path.realpath(r)) for r in plan.reference):
        return "skipped", "under a reference folder"
    try:
        if not os.path.isfile(path):
            return "skipped", "not a regular file"
        if file_sha256(path) != member.sha256:
            return "skipped", "changed since the plan"
    except OSError as exc:
        return "skipped", f"cannot be read ({exc.strerror})"
    return None


def _relative(path: str, base: str) -> str:
    real = _key(path)
    rel = os.path.relpath(real, base)
    if rel.startswith(os.pardir):
        rel = real.lstrip(os.sep)  # outside the base (cannot happen for files inside the roots)
    return rel


def _destination(path: str, base: str, to: Path) -> Path:
    return to / _relative(path, base)


def _free_name(path: Path) -> Path:
    """``path``, or ``path~2``, ``path~3``... whichever does not exist yet."""
    candidate, n = path, 1
    while os.path.lexists(candidate):
        n += 1
        candidate = path.with_name(f"{path.name}~{n}")
    return candidate


def _act(
    writer: _Journal,
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
        "dest_root": str(dest_root),  # --to or the trash: undo tidies empty folders below it
        "sha256": member.sha256,
        "keeper": keeper.path,
    }
    if action in ("hardlink", "symlink"):
        entry["tmp"] = os.path.join(os.path.dirname(src), f".bienc-link-{uuid.uuid4().hex[:12]}")
    seq = writer.intent(entry)
    try:
        if action in ("move", "delete"):
            _move(src, dest)
        else:
            _replace_with_link(action, src, keeper.path, dest, entry["tmp"])
    except OSError as exc:
        writer.record("failed", seq)
        outcome.status, outcome.reason = "failed", exc.strerror or str(exc)
        return
    writer.record("done", seq)
    outcome.status = "done"


def _move(src: str, dest: Path) -> None:
    """Rename ``src`` to ``dest`` (parents created), copying across file systems; durable."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(src, dest)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        _copy_across(src, dest)
        os.unlink(src)
    _fsync_dir(dest.parent)
    _fsync_dir(Path(src).parent)


def _copy_across(src: str, dest: Path) -> None:
    partial = dest.with_name(dest.name + ".bienc-partial")
    if os.path.islink(src):
        os.symlink(os.readlink(src), partial)
    else:
        shutil.copy2(src, partial)
        with open(partial, "rb") as fh:
            os.fsync(fh.fileno())
        if file_sha256(partial) != file_sha256(src):
            os.unlink(partial)
            raise OSError(errno.EIO, f"copy of {src} differs from the original")
    os.rename(partial, dest)


def _replace_with_link(action: str, src: str, keeper: str, dest: Path, tmp: str) -> None:
    """Keep the original in the trash, and put a link to the keeper in its place."""
    if action == "hardlink":
        os.link(keeper, tmp)  # fails across file systems: nothing has changed yet
    else:
        os.symlink(os.path.relpath(keeper, os.path.dirname(src)), tmp)
    try:
        _move(src, dest)
    except OSError:
        os.unlink(tmp)
        raise
    try:
        os.rename(tmp, src)  # src is missing only between these two renames
    except OSError:
        _move(str(dest), Path(src))  # put the original back before reporting the failure
        os.unlink(tmp)
        raise
    _fsync_dir(Path(src).parent)


# -- the journal -----------------------------------------------------------------------------


class _Journal:
    """An append-only JSON Lines log, fsynced after every entry.

    Entries: ``begin`` (one per apply run), ``do`` (an action about to be made, with ``seq``),
    then ``done``, ``failed`` or, after an undo, ``undone`` for that ``seq``.
    """

    def __init__(self, path: Path, fh: TextIO, next_seq: int) -> None:
        self.path = path
        self.fh = fh
        self.next_seq = next_seq

    @classmethod
    def open(cls, path: Path, plan: Plan | None, action: str) -> _Journal:
        existed = path.exists()
        next_seq = (
            1 + max((e.get("seq", 0) for e in read_journal(path)), default=0) if existed else 1
        )
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fh = open(path, "a", encoding="utf-8")
        except OSError as exc:
            raise StorageError(f"cannot write the journal {path}: {exc.strerror}") from exc
        journal = cls(path, fh, next_seq)
        journal._write(
            {
                "op": "begin",
                "format": JOURNAL_FORMAT,
                "format_version": FORMAT_VERSION,
                "bienc_version": __version__,
                "at": _now(),
                "action": action,
                "plan": str(plan.path) if plan and plan.path else None,
            }
        )
        if not existed:
            _fsync_dir(path.parent)
        return journal

    def intent(self, entry: dict[str, Any]) -> int:
        seq = self.next_seq
        self.next_seq += 1
        self._write({"op": "do", "seq": seq, **entry})
        return seq

    def record(self, op: str, seq: int) -> None:
        self._write({"op": op, "seq": seq})

    def _write(self, entry: dict[str, Any]) -> None:
        try:
            self.fh.write(json.dumps(entry, ensure_ascii=False) + "\n")
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
            entry = json.loads(line)
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


# -- undo ------------------------------------------------------------------------------------


def undo(journal: Path, *, dry_run: bool = False) -> ActionReport:
    """Reverse every action of the journal not undone yet, newest first.

    What to do is decided from the disk, whatever the journal says happened next (``done``,
    ``failed`` or nothing, after a crash): a file found at its destination with its recorded
    bytes, and nothing else in its old place, is put back.
    """
    journal = Path(journal).absolute()
    entries = read_journal(journal)
    undone = {e["seq"] for e in entries if e.get("op") == "undone"}
    todo = [e for e in entries if e.get("op") == "do" and e.get("seq") not in undone]
    report = ActionReport("restore", dry_run, journal=str(journal), trash=str(trash_for(journal)))
    writer: _Journal | None = None
    try:
        for entry in reversed(todo):
            outcome = Outcome(entry["path"], "restore", "skipped", dest=entry.get("dest"))
            report.outcomes.append(outcome)
            verdict = _undo_verdict(entry)
            if verdict is not None:
                outcome.status, outcome.reason = verdict
                if outcome.status == "already" and not dry_run:
                    writer = writer or _Journal.open(journal, None, "undo")
                    writer.record("undone", entry["seq"])
                continue
            if dry_run:
                outcome.status = "would"
                continue
            writer = writer or _Journal.open(journal, None, "undo")
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


def _undo_verdict(entry: dict[str, Any]) -> tuple[str, str] | None:
    """Why an entry cannot or need not be reversed; None when it should be."""
    src, dest, action = entry["path"], entry["dest"], entry["action"]
    src_there, dest_there = os.path.lexists(src), os.path.lexists(dest)
    if not dest_there:
        if (
            src_there
            and not _is_link_to(src, entry["keeper"], action)
            and _same_bytes(src, entry["sha256"])
        ):
            return "already", "in place (the action never happened)"
        where = "the trash" if action != "move" else "the --to folder"
        return "skipped", f"not found in {where} ({dest}); it was moved or removed since"
    if not _same_bytes(dest, entry["sha256"]):
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
    _move(str(dest), Path(src))
    root = entry.get("dest_root")
    if root:
        _remove_empty_folders(dest.parent, Path(root), including_root=entry["action"] != "move")


def _is_link_to(path: str, keeper: str, action: str) -> bool:
    try:
        if action == "symlink":
            return os.path.islink(path) and os.path.samefile(path, keeper)
        if action == "hardlink":
            return not os.path.islink(path) and os.path.samefile(path, keeper)
    except OSError:
        return False
    return False


def _same_bytes(path: str | Path, sha256: str) -> bool:
    try:
        return os.path.isfile(path) and file_sha256(path) == sha256
    except OSError:
        return False


def _remove_empty_folders(folder: Path, root: Path, *, including_root: bool) -> None:
    """Remove ``folder`` and its parents up to ``root`` while they are empty (best effort).

    The trash is bienc's own and goes when empty; a --to folder the user named stays.
    """
    stop = root if including_root else None
    with contextlib.suppress(OSError, ValueError):
        folder.relative_to(root)  # only folders below the destination root
        while True:
            if folder == root and not including_root:
                return
            folder.rmdir()
            if folder == stop:
                return
            folder = folder.parent


# -- helpers ---------------------------------------------------------------------------------


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise StorageError(f"cannot write {path}: {exc.strerror}") from exc


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
