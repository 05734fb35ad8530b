"""Path rules written once: containment, and the literal folder a glob pattern starts at."""

from __future__ import annotations

import glob
import os


def is_under(path: str, folder: str, *, strictly: bool = False) -> bool:
    """Whether ``path`` is ``folder`` or inside it, by name (resolve both first where links
    matter). ``strictly``: inside it, not the folder itself. ``/a/bc`` is not under ``/a/b``."""
    if path == folder:
        return not strictly
    return path.startswith(folder.rstrip(os.sep) + os.sep)


def literal_prefix(pattern: str) -> str:
    """The folder part of a glob ``pattern`` before its first component with a wildcard:
    ``docs/*/a.md`` -> ``docs``, ``*.md`` -> ``.``, ``/x/**`` -> ``/x``."""
    literal = []
    for part in pattern.split(os.sep)[:-1]:
        if glob.has_magic(part):
            break
        literal.append(part)
    return os.sep.join(literal) or (os.sep if pattern.startswith(os.sep) else os.curdir)
