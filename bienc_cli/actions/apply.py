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
"""

from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import hmac
import json
import os
import secrets
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from bienc_cli import __version__
from bienc_cli.errors import StorageError, UsageError
from bienc_cli.inputs.documents import real_path, stored_path
from bienc_cli.util.fs import fsync_dir
from bienc_cli.util.paths import is_under, literal_prefix

if TYPE_CHECKING:
    from bienc_cli.dedup.detect import Corpus, Detection

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
    plan_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    # The roots with symlinks and ``..`` resolved when the plan was made: members must still
    # resolve inside them, so a root swapped for a link since then moves nothing elsewhere.
    resolved_roots: list[str] | None = None

    def __post_init__(self) -> None:
        if self.resolved_roots is None:
            self.resolved_roots = resolve_roots(self.roots)

    def to_dict(self, key: bytes) -> dict[str, Any]:
        """The plan as written, signed with ``key`` (see ``signing_key``)."""
        return {
            "format": PLAN_FORMAT,
            "format_version": FORMAT_VERSION,
            "bienc_version": __version__,
            "created_at": self.created_at,
            "review": "Delete a member, or a whole group, to leave those files alone; then run "
            "`bienc dedup --apply THIS_FILE --action ...`. Files whose bytes no longer match "
            "their sha256 are skipped, and so is every member of a group whose keeper changed. "
            "Any other edit (roots, reference, action, to, or an entry added or changed) makes "
            "bienc refuse the plan: its signatures no longer match.",
            "plan_id": self.plan_id,
            "action": self.action,
            "to": self.to,
            "settings": self.settings,
            "roots": self.roots,
            "resolved_roots": self.resolved_roots,
            "reference": self.reference,
            "signature": _mac(key, *self._signed_fields()),
            "groups": [
                {
                    "group": g.group,
                    "keeper": g.keeper.to_dict()
                    | {"mac": self._file_mac(key, g, "keeper", g.keeper)},
                    "members": [
                        m.to_dict() | {"mac": self._file_mac(key, g, "member", m)}
                        for m in g.members
                    ],
                }
                for g in self.groups
            ],
            "left_out": self.left_out,
        }

    def _signed_fields(self) -> tuple[Any, ...]:
        return (
            "plan", self.plan_id, self.roots, self.resolved_roots, self.reference, self.action,
            self.to,
        )  # fmt: skip

    def _file_mac(self, key: bytes, group: PlannedGroup, role: str, f: PlannedFile) -> str:
        return _mac(key, "file", self.plan_id, group.group, role, f.path, f.sha256, f.size)

    def verify(self, key: bytes, data: dict[str, Any]) -> None:
        """Raise UsageError unless ``data`` (this plan as read) carries bienc's signatures:
        the same roots, reference, action and destination, and only entries it planned."""
        where = self.path or "the plan"
        if not hmac.compare_digest(
            str(data.get("signature", "")), _mac(key, *self._signed_fields())
        ):
            raise UsageError(
                f"{where} was changed where a review may not change it (its roots, reference, "
                "action or destination differ from what bienc wrote), or another user made it: "
                "nothing was changed. Make the plan again with `bienc dedup --plan`; to leave "
                "files alone, delete their entries"
            )
        for g, raw in zip(self.groups, data["groups"]):
            entries = [("keeper", g.keeper, raw["keeper"])]
            entries += [("member", m, r) for m, r in zip(g.members, raw["members"])]
            for role, f, r in entries:
                if not hmac.compare_digest(str(r.get("mac", "")), self._file_mac(key, g, role, f)):
                    raise UsageError(
                        f"{where} lists {f.path} as a {role} of group {g.group}, which bienc did "
                        "not plan (a review may only delete members or whole groups): nothing "
                        "was changed"
                    )


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
    plan.left_out += [
        {"path": records[i].path, "reason": reason}
        for i, reason in detection.stale
        if not records[i].is_row
    ]
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
    """Write the plan, signed, atomically (a reader never sees half of it). An existing file
    is replaced only if it is a bienc plan: ``--plan notes.txt`` never overwrites notes."""
    path = Path(path)
    if os.path.lexists(path) and not _is_plan_file(path):
        raise UsageError(
            f"--plan {path}: the file exists and is not a bienc plan; choose another name"
        )
    data = _stored(plan.to_dict(signing_key(create=True)))
    text = json.dumps(data, indent=2, ensure_ascii=False)
    _atomic_write(path, text + "\n")
    plan.path = path


def _is_plan_file(path: Path) -> bool:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.loads(fh.read(50 << 20))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(data, dict) and data.get("format") == PLAN_FORMAT


def read_plan(path: Path) -> Plan:
    """A plan written by `bienc dedup --plan`, perhaps reviewed: UsageError if it is not one,
    or if it was edited beyond deleting entries (see ``Plan.verify``)."""
    path = Path(path)
    try:
        data = _real(json.loads(path.read_text(encoding="utf-8")))
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
            plan_id=str(data["plan_id"]),
            resolved_roots=[str(r) for r in data["resolved_roots"]],
        )
    except KeyError as exc:
        if exc.args and exc.args[0] in ("plan_id", "resolved_roots"):
            raise UsageError(
                f"{path} carries no bienc signature (an older bienc made it): make the plan "
                "again with `bienc dedup --plan`"
            ) from None
        raise UsageError(f"the plan {path} is damaged (KeyError: {exc})") from exc
    except (TypeError, ValueError) as exc:
        raise UsageError(f"the plan {path} is damaged ({type(exc).__name__}: {exc})") from exc
    try:
        key = signing_key(create=False)
    except FileNotFoundError:
        raise UsageError(
            f"cannot check that bienc wrote the plan {path}: there is no signing key at "
            f"{key_path()} (a plan is applied by the user who made it): make the plan again"
        ) from None
    plan.verify(key, data)
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


# -- signatures ------------------------------------------------------------------------------

KEY_NAME = "dedup.key"


def key_path() -> Path:
    """The user's signing key: ``$XDG_STATE_HOME/bienc/dedup.key`` (~/.local/state/...)."""
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "state"
    )
    return Path(state) / "bienc" / KEY_NAME


def signing_key(*, create: bool) -> bytes:
    """The secret that signs this user's plans and journals, made on first use (0600).

    Whoever can edit a plan but cannot read this file cannot make bienc act outside the roots
    it recorded. FileNotFoundError when there is none and ``create`` is false.
    """
    path = key_path()
    try:
        return _read_key(path)
    except FileNotFoundError:
        if not create:
            raise
    tmp = path.with_name(f".{KEY_NAME}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(secrets.token_hex(32) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)  # unlike a rename, never replaces a key already there
        except FileExistsError:
            pass  # another bienc made one first: use it
        except OSError:  # a file system without hard links: create the name itself
            _write_new(path, tmp.read_bytes())
        _sync_folder(path.parent)
    except OSError as exc:
        raise StorageError(f"cannot write the signing key {path}: {exc.strerror}") from exc
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
    return _read_key(path)


def _write_new(path: Path, data: bytes) -> None:
    with contextlib.suppress(FileExistsError):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())


def _read_key(path: Path) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        raise
    except OSError as exc:  # a link (O_NOFOLLOW), unreadable...
        raise UsageError(f"cannot read the signing key {path}: {exc.strerror}") from exc
    with os.fdopen(fd, encoding="ascii", errors="replace") as fh:
        st = os.fstat(fh.fileno())
        text = fh.read(1024).strip()
    if st.st_uid != os.geteuid() or st.st_mode & 0o077:
        raise UsageError(
            f"the signing key {path} must belong to you and be private: chmod 600 {path}"
        )
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) < 16:
        raise UsageError(
            f"the signing key {path} is damaged: remove it (plans made with it must be made again)"
        )
    return key


def _mac(key: bytes, *fields: Any) -> str:
    """HMAC-SHA256 of ``fields`` (JSON, ASCII-escaped so odd file names sign too)."""
    message = json.dumps(fields, ensure_ascii=True, sort_keys=True, separators=(",", ":"))
    return hmac.new(key, message.encode("ascii"), hashlib.sha256).hexdigest()[:32]


# -- where things go -------------------------------------------------------------------------


def root_folder(root: str) -> str:
    """The folder a root stands for: itself, a file's folder, a pattern's literal prefix."""
    if glob.has_magic(root):
        return literal_prefix(root)
    return root if os.path.isdir(root) else os.path.dirname(root)


def base_folder(roots: Sequence[str]) -> str:
    """The folder moved files keep their tree relative to: the roots' common ancestor."""
    folders = [os.path.realpath(root_folder(r)) for r in roots] or [os.getcwd()]
    return os.path.commonpath(folders)


def resolve_roots(roots: Sequence[str]) -> list[str]:
    """Each root as it resolves now (symlinks and ``..``): a folder or a pattern's literal
    prefix fully, a file root as itself in its resolved folder (a link named is the link)."""
    out = []
    for root in roots:
        if glob.has_magic(root):
            out.append(os.path.realpath(root_folder(root)))
        elif os.path.isdir(root) or not os.path.lexists(root):
            out.append(os.path.realpath(root))
        else:
            out.append(_resolved(root))
    return out


def inside_resolved(path: str, resolved_roots: Sequence[str]) -> bool:
    """Whether ``path`` (the link itself, its folders resolved) is in one of the roots."""
    real = _resolved(path)
    return any(is_under(real, root) for root in resolved_roots)


def within_roots(path: str, roots: Sequence[str]) -> bool:
    """Whether ``path`` (the link itself, not its target) is inside one of the roots."""
    import fnmatch

    real = os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path))
    for root in roots:
        if glob.has_magic(root):
            folder = os.path.realpath(root_folder(root))
            if is_under(real, folder) and (
                fnmatch.fnmatch(path, root) or fnmatch.fnmatch(path, os.path.join(root, "*"))
            ):
                return True
            continue
        target = os.path.realpath(root)
        if os.path.isdir(target) or not os.path.lexists(root):
            if is_under(real, target, strictly=True):
                return True
        elif real == os.path.join(os.path.realpath(os.path.dirname(root)), os.path.basename(root)):
            return True
    return False


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
        _check_own_folder(trash)
    dest_root = Path(to) if action == "move" else trash  # type: ignore[arg-type]
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
                    dest = _destination(member.path, base, dest_root)
                    if os.path.lexists(dest):
                        outcome.reason = f"{dest} already exists"
                        continue
                else:  # delete, or a link in its place: the original goes to the trash
                    dest = _free_name(trash / _relative(member.path, base))
                if not is_under(_resolved(str(dest)), os.path.realpath(dest_root)):
                    outcome.reason = f"{dest} leads out of {dest_root} through a link"
                    continue
                outcome.dest = str(dest)
                if dry_run:
                    outcome.status = "would"
                    continue
                if writer is None:
                    writer = _Journal.open(journal, plan, action, dest_root)
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
    keepers = {_resolved(g.keeper.path) for g in plan.groups}
    seen: set[str] = set()
    for group in plan.groups:
        for member in group.members:
            key = _resolved(member.path)
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


def _resolved(path: str) -> str:
    return os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path))


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
    if _same_file(path, keeper.path):
        return "already", "is its keeper's file (a link to it)"
    if not within_roots(path, plan.roots):
        return "skipped", "outside the roots"
    if not inside_resolved(path, plan.resolved_roots or ()):
        return "skipped", f"outside the roots: it resolves to {_resolved(path)}"
    if any(is_under(_resolved(path), os.path.realpath(r)) for r in plan.reference):
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
    real = _resolved(path)
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
        "dest_root": str(dest_root),  # --to or the trash
        # the folders this action is about to make there: the only ones undo may remove
        "folders": _missing_folders(dest.parent, dest_root, including_root=action != "move"),
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
    _sync_folder(dest.parent)
    _sync_folder(Path(src).parent)


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
    _sync_folder(Path(src).parent)


# -- the journal -----------------------------------------------------------------------------


class _Journal:
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
    ) -> _Journal:
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
            "at": _now(),
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
            _sync_folder(path.parent)
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
            self.fh.write(json.dumps(_stored(entry), ensure_ascii=False) + "\n")
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
            entry = _real(json.loads(line))
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
    return _mac(key, "journal", {k: v for k, v in entry.items() if k != "mac"})


def _verified_runs(entries: list[dict[str, Any]], path: Path) -> dict[str, dict[str, Any]]:
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


# -- undo ------------------------------------------------------------------------------------


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
    runs = _verified_runs(entries, journal)
    undone = {e["seq"] for e in entries if e.get("op") == "undone"}
    todo = [e for e in entries if e.get("op") == "do" and e.get("seq") not in undone]
    report = ActionReport("restore", dry_run, journal=str(journal), trash=str(trash_for(journal)))
    writer: _Journal | None = None
    try:
        for entry in reversed(todo):
            outcome = Outcome(entry["path"], "restore", "skipped", dest=entry.get("dest"))
            report.outcomes.append(outcome)
            verdict = _undo_verdict(entry, runs[entry["run"]])
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


def _undo_verdict(entry: dict[str, Any], run: dict[str, Any]) -> tuple[str, str] | None:
    """Why an entry cannot or need not be reversed; None when it should be."""
    src, dest, action = entry["path"], entry["dest"], entry["action"]
    if not inside_resolved(src, run.get("resolved_roots") or ()):
        return "skipped", f"outside the roots: {src} now resolves to {_resolved(src)}"
    dest_root = entry["dest_root"]
    if not is_under(_resolved(dest), os.path.realpath(dest_root)):
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


def _same_bytes(path: str | Path, sha256: str) -> bool:
    try:
        return os.path.isfile(path) and file_sha256(path) == sha256
    except OSError:
        return False


def _missing_folders(folder: Path, root: Path, *, including_root: bool) -> list[str]:
    """The folders from ``root`` down to ``folder`` that do not exist yet, outermost first.

    The trash is bienc's own and may go when empty; a --to folder the user named stays.
    """
    missing: list[str] = []
    current = folder
    while not os.path.lexists(current) and (including_root or current != root):
        missing.append(str(current))
        if current == root or current.parent == current:
            break
        current = current.parent
    return missing[::-1]


def _remove_made_folders(entry: dict[str, Any]) -> None:
    """Remove, innermost first, the folders the entry's action made, while empty (best
    effort): never a folder that was there before, never one outside its destination root."""
    root = os.path.realpath(entry["dest_root"])
    for folder in reversed(entry.get("folders") or []):
        if is_under(_resolved(folder), root):
            with contextlib.suppress(OSError):
                os.rmdir(folder)


# -- helpers ---------------------------------------------------------------------------------


def _stored(value: Any) -> Any:
    """``value`` fit for a plan or journal, which are UTF-8 JSON: each string as
    ``documents.stored_path`` writes it (a file name that is not UTF-8 becomes a file://
    URL of its bytes; any other string stays as it is). ``_real`` reverses it."""
    if isinstance(value, str):
        return stored_path(value)
    if isinstance(value, dict):
        return {k: _stored(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_stored(v) for v in value]
    return value


def _real(value: Any) -> Any:
    """``value`` as read from a plan or journal, with the real paths ``_stored`` wrote."""
    if isinstance(value, str):
        return real_path(value)
    if isinstance(value, dict):
        return {k: _real(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_real(v) for v in value]
    return value


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "x", encoding="utf-8") as fh:  # a name of its own, never replaced
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        _sync_folder(path.parent)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise StorageError(f"cannot write {path}: {exc.strerror}") from exc


def _sync_folder(path: Path) -> None:
    """fsync_dir, best effort: the move or copy it follows has happened either way."""
    with contextlib.suppress(OSError):
        fsync_dir(path)
