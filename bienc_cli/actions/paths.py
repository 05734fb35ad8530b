"""Where things are and where they go: the roots a plan may act in, and its journal and trash.

Containment is judged after resolving symlinks and ``..`` in a path's folders, never its
last component: a link named in a plan is the link, not what it points at.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from bienc_cli.util.paths import is_under, literal_prefix

STATE_DIR = ".bienc-dedup"  # default home of plans, journals and trash: hidden, so not indexed


def resolved(path: str) -> str:
    """``path`` with its folders resolved but not its last component: a link is the link."""
    return os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path))


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
            out.append(resolved(root))
    return out


def inside_resolved(path: str, resolved_roots: Sequence[str]) -> bool:
    """Whether ``path`` (the link itself, its folders resolved) is in one of the roots."""
    real = resolved(path)
    return any(is_under(real, root) for root in resolved_roots)


def within_roots(path: str, roots: Sequence[str]) -> bool:
    """Whether ``path`` (the link itself, not its target) is inside one of the roots."""
    import fnmatch

    real = resolved(path)
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
        elif real == resolved(root):
            return True
    return False


def relative(path: str, base: str) -> str:
    """Where ``path`` is below ``base``: moved and trashed files keep their tree under it."""
    real = resolved(path)
    rel = os.path.relpath(real, base)
    if rel.startswith(os.pardir):
        rel = real.lstrip(os.sep)  # outside the base (cannot happen for files inside the roots)
    return rel


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
