"""What an apply or an undo did, file by file: the records the UI renders."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


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
