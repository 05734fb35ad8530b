"""The dedup plan: which files duplicate which, with their hashes; made, written, read back.

A plan is signed (see ``signing``) over its roots, reference folders, action and
destination, and over each file entry. A reviewed plan may lose entries (that is how a
person leaves files alone) but not gain or change any: ``read_plan`` refuses it otherwise.
"""

from __future__ import annotations

import hmac
import json
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bienc_cli import __version__
from bienc_cli.actions.formats import FORMAT_VERSION, now, real, stored
from bienc_cli.actions.fs import atomic_write, file_sha256, same_file
from bienc_cli.actions.paths import resolve_roots, within_roots
from bienc_cli.actions.signing import key_path, mac, signing_key
from bienc_cli.errors import UsageError

if TYPE_CHECKING:
    from bienc_cli.dedup.corpus import Corpus
    from bienc_cli.dedup.detect import Detection, DocRecord

PLAN_FORMAT = "bienc-dedup-plan"
ACTIONS = ("move", "delete", "hardlink", "symlink")


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
            "signature": mac(key, *self._signed_fields()),
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
        return mac(key, "file", self.plan_id, group.group, role, f.path, f.sha256, f.size)

    def verify(self, key: bytes, data: dict[str, Any]) -> None:
        """Raise UsageError unless ``data`` (this plan as read) carries bienc's signatures:
        the same roots, reference, action and destination, and only entries it planned."""
        where = self.path or "the plan"
        if not hmac.compare_digest(
            str(data.get("signature", "")), mac(key, *self._signed_fields())
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


def check_action(action: str | None, to: str | None) -> None:
    if action is not None and action not in ACTIONS:
        raise UsageError(f"unknown --action {action!r}; choose one of {', '.join(ACTIONS)}")
    if action == "move" and not to:
        raise UsageError("--action move needs --to DIR (where the duplicates go)")
    if to and action != "move":
        raise UsageError("--to is only for --action move")


def build_plan(
    corpus: Corpus, detection: Detection, *, action: str | None = None, to: str | None = None
) -> Plan:
    """The plan for the file groups of ``detection`` (table rows are never in a plan).

    A file that changed since it was indexed cannot be trusted to be what was compared: it
    is left out, and a group whose keeper changed is left out whole. "Changed" is dedup's
    own rule (``dedup.stale.disk_problem``: size and mtime as indexed, else the text read
    again and hashed), so a file only touched is in the plan as it is in the report.
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
        created_at=now(),
    )
    records = detection.records
    texts: dict[str, dict[str | None, str]] = {}  # disk_problem's cache of re-read files
    plan.left_out += [
        {"path": records[i].path, "reason": reason}
        for i, reason in detection.stale
        if not records[i].is_row
    ]
    for number, group in enumerate(detection.groups, 1):
        keeper = records[group.keeper]
        if keeper.is_row:
            continue
        planned_keeper, problem = _planned(keeper, texts)
        if planned_keeper is None:
            plan.left_out += [
                {"path": records[m.index].path, "reason": f"its keeper {problem}"}
                for m in group.members
            ]
            continue
        members = []
        for member in group.members:
            record = records[member.index]
            planned, problem = _planned(record, texts)
            if planned is None:
                plan.left_out.append({"path": record.path, "reason": problem})
                continue
            if not within_roots(record.path, plan.roots):
                plan.left_out.append({"path": record.path, "reason": "outside the roots"})
                continue
            if same_file(record.path, keeper.path):
                plan.left_out.append({"path": record.path, "reason": "is its keeper's file"})
                continue
            planned.similarity, planned.match = member.similarity, member.match
            members.append(planned)
        if members:
            plan.groups.append(PlannedGroup(number, planned_keeper, members))
    return plan


def _planned(record: DocRecord, texts: dict[str, dict[str | None, str]]):
    """The file as the plan records it (its bytes' sha256 now), or None and why not."""
    from bienc_cli.dedup.stale import disk_problem

    problem = disk_problem(record, texts, ((), None))  # a plan holds files, never table rows
    if problem:
        if problem.startswith("changed"):
            problem += " (re-index, then plan again)"
        return None, problem
    try:
        sha256 = file_sha256(record.path)
        return PlannedFile(record.path, sha256, os.path.getsize(record.path)), ""
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
    data = stored(plan.to_dict(signing_key(create=True)))
    text = json.dumps(data, indent=2, ensure_ascii=False)
    atomic_write(path, text + "\n")
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
        data = real(json.loads(path.read_text(encoding="utf-8")))
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
