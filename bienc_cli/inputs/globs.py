"""Glob patterns: a source pattern expanded on disk (symlinks found, not followed; loops
cut), and the --include/--exclude patterns matched against the files a walk finds."""

from __future__ import annotations

import fnmatch
import os
import stat
from collections.abc import Sequence

from bienc_cli.inputs.documents import Skipped, os_reason

GLOB_MAGIC = frozenset("*?[")
NOT_FOLLOWED = "symlink (not followed; pass --follow-symlinks)"
DIR_NOT_FOLLOWED = "symlink to a directory (not followed; pass --follow-symlinks)"


def expand_glob(pattern: str, *, hidden: bool, follow: bool) -> list[tuple[str, Skipped | None]]:
    """What ``pattern`` matches, as ``glob.glob(pattern, recursive=True)`` finds it, sorted.

    Unlike glob.glob, a symlink reached through a wildcard or ``**`` is found, not named: it
    is not followed unless ``follow``, and when followed, a folder that is its own ancestor is
    a loop (glob.glob follows every link, and two looping links make it run for ever).
    Literal components are named, and followed. A trailing ``**`` matches its folder (which
    is then walked: the same files, under the walker's rules). Folders that cannot be listed,
    and paths that cannot be examined (below a folder that cannot be searched), come back
    with a Skipped saying why, so that what was indexed at or under them is kept.
    """
    parts = pattern.split(os.sep)
    first = next(i for i, part in enumerate(parts) if GLOB_MAGIC.intersection(part))
    base = os.sep.join(parts[:first]) or (os.sep if pattern.startswith(os.sep) else os.curdir)
    rest = [part for part in parts[first:] if part]  # "a//b" is "a/b"
    dirs_only = pattern.endswith(os.sep)
    if rest and rest[-1] == "**":
        rest, dirs_only = rest[:-1], True
    results: dict[str, Skipped | None] = {}
    top = identity(base)
    stack: list[tuple[str, int, frozenset[tuple[int, int]]]] = [
        (base, 0, frozenset({top} if top else ()))
    ]
    while stack:
        directory, i, ancestors = stack.pop()
        if i == len(rest):
            if not dirs_only or os.path.isdir(directory):
                results.setdefault(directory, None)
            continue
        part = rest[i]
        if not GLOB_MAGIC.intersection(part):
            path = os.path.join(directory, part)
            last = i + 1 == len(rest) and not dirs_only
            try:
                st = os.lstat(path) if last else os.stat(path)
            except (FileNotFoundError, NotADirectoryError):
                continue
            except OSError as exc:  # under a folder that cannot be searched, say
                results[path] = Skipped(path, os_reason(exc), error=True, keep=path)
                continue
            if last:
                results.setdefault(path, None)
            elif stat.S_ISDIR(st.st_mode):
                stack.append((path, i + 1, ancestors))
            continue
        try:
            with os.scandir(directory) as it:
                entries = list(it)
        except OSError as exc:
            if not isinstance(exc, (FileNotFoundError, NotADirectoryError)):
                reason = os_reason(exc)
                results[directory] = Skipped(directory, reason, error=True, keep=directory)
            continue
        if part == "**":
            stack.append((directory, i + 1, ancestors))  # zero folders
        for entry in entries:
            name = entry.name
            if name == ".git" or (name.startswith(".") and not hidden and part[0] != "."):
                continue
            if part != "**" and not fnmatch.fnmatch(name, part):
                continue
            path = os.path.join(directory, name)
            last = i + 1 == len(rest) and part != "**"
            try:
                is_link = entry.is_symlink()
                is_dir = entry.is_dir()  # follows a link
            except OSError:
                is_link, is_dir = False, False
            if last and not dirs_only:
                why = DIR_NOT_FOLLOWED if is_dir else NOT_FOLLOWED
                results.setdefault(path, Skipped(path, why) if is_link and not follow else None)
                continue
            if not is_dir:
                continue
            if is_link and not follow:
                results.setdefault(path, Skipped(path, DIR_NOT_FOLLOWED))
                continue
            try:
                st = os.stat(path)
            except FileNotFoundError:
                continue
            except OSError as exc:
                results[path] = Skipped(path, os_reason(exc), error=True, keep=path)
                continue
            key = (st.st_dev, st.st_ino)
            if key in ancestors:
                results.setdefault(path, Skipped(path, "symlink loop"))
                continue
            stack.append((path, i if part == "**" else i + 1, ancestors | {key}))
    return sorted(results.items())


def identity(path: str) -> tuple[int, int] | None:
    """(st_dev, st_ino) of what ``path`` names, links followed: how loops are told; None when
    it cannot be examined."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def pattern_variants(patterns: Sequence[str]) -> tuple[str, ...]:
    """fnmatch patterns, plus a variant with "**/" removed so that it can match zero folders."""
    expanded: list[str] = []
    for pattern in patterns:
        pattern = pattern.replace(os.sep, "/").removeprefix("./")
        expanded.append(pattern)
        if "**/" in pattern:
            expanded.append(pattern.replace("**/", ""))
    return tuple(expanded)


def matches_any(patterns: tuple[str, ...], rel: str, name: str) -> bool:
    return any(fnmatch.fnmatchcase(rel, p) or fnmatch.fnmatchcase(name, p) for p in patterns)
