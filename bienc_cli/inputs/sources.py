"""Finding the files to index: walk directories, expand globs, honour ignore files.

``discover`` turns command-line sources into a stream of FileEntry (a file to read) and
Skipped (something found on disk that will not be read, and why). Files dropped by a rule the
user set or implied (.gitignore/.biencignore, hidden, --include/--exclude) are dropped
silently: listing them would flood the report.

Only bad command-line arguments raise (UsageError, before anything is yielded); nothing found
on disk does.

Symlinks follow ripgrep's rule: one named on the command line (or on stdin) is followed; one
found while walking, or reached through a glob's wildcards, is not, unless --follow-symlinks
(then loops are cut). A bienc index found in the tree, and the index being written, are never
sources. Patterns are expanded and matched in ``globs``; ignore files are read in ``ignore``.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import BinaryIO

from bienc_cli.errors import UsageError
from bienc_cli.inputs.documents import FileEntry, Skipped, os_reason, stored_path
from bienc_cli.inputs.globs import (
    DIR_NOT_FOLLOWED,
    GLOB_MAGIC,
    NOT_FOLLOWED,
    expand_glob,
    identity,
    matches_any,
    pattern_variants,
)
from bienc_cli.inputs.ignore import Chain, IgnoreFiles
from bienc_cli.inputs.tables import TABLE_SUFFIXES
from bienc_cli.store import layout as store
from bienc_cli.util.paths import literal_prefix


@dataclass(frozen=True)
class SourceOptions:
    """What to take from the sources given on the command line."""

    include: tuple[str, ...] = ()  # glob patterns; when given, only matching files are taken
    exclude: tuple[str, ...] = ()  # glob patterns; matching files/dirs are dropped
    hidden: bool = False  # include dot-files and dot-folders
    max_file_size: int = 20 * 2**20  # bytes; larger non-table files are skipped
    follow_symlinks: bool = False  # follow symlinks (files and folders) found while walking
    use_ignore_files: bool = True  # honour .gitignore and .biencignore


def read_path_list(stream: BinaryIO, *, null_separated: bool) -> list[str]:
    """Paths listed on ``stream`` (the ``-`` source): one per line, or NUL-separated."""
    data = stream.read()
    if null_separated:
        parts = data.split(b"\0")
    else:
        parts = [line.removesuffix(b"\r") for line in data.split(b"\n")]
    # fsdecode keeps undecodable bytes (surrogateescape): such a name is read like any other.
    return [os.fsdecode(part) for part in parts if part]


def discover(
    sources: Sequence[str],
    options: SourceOptions,
    *,
    stdin_paths: Iterable[str] = (),
    index: str | None = None,
) -> Iterator[FileEntry | Skipped]:
    """Every file to index under ``sources`` (directories, files, glob patterns), each once.

    Raises UsageError now, before anything is yielded, for a source that does not exist, a
    pattern that matches nothing, or a source that is (or is inside) a bienc index.
    ``stdin_paths`` are read lazily; a missing one is Skipped. ``index``: the index being
    written, left out silently wherever it is found.
    """
    discovery = _Discovery(options, index)
    planned = [discovery.plan(source) for source in sources]
    return discovery.run(planned, stdin_paths)


def is_gone(source: str, options: SourceOptions) -> bool:
    """Whether a remembered source is gone for sure: nothing is at its path, or, for a glob
    pattern, nothing matches. A path that cannot be examined (permission denied, I/O error)
    is not gone: its documents are kept."""
    if os.path.lexists(source) or not GLOB_MAGIC.intersection(source):
        return not may_exist(source)
    return not expand_glob(source, hidden=options.hidden, follow=options.follow_symlinks)


def may_exist(path: str) -> bool:
    """False only when nothing is there; True too when the path cannot be examined."""
    try:
        os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError:
        return True
    return True


@dataclass(frozen=True)
class _GlobMatches:
    pattern: str
    root: str  # the pattern's leading directory without wildcards, absolute
    matches: list[tuple[str, Skipped | None]]  # path, or why it is not taken


@dataclass
class _Frame:
    """A directory being walked."""

    path: str
    rel: str  # relative to the walk root, with "/"; "" for the root itself
    chain: Chain
    ancestors: frozenset[tuple[int, int]]  # (st_dev, st_ino) of the directories above
    entries: Iterator[os.DirEntry[str]]


class _Discovery:
    def __init__(self, options: SourceOptions, index: str | None = None) -> None:
        self.options = options
        self.include = pattern_variants(options.include)
        self.exclude = pattern_variants(options.exclude)
        self.ignores = IgnoreFiles(options.use_ignore_files)
        self.seen: set[str] = set()
        self.unsearchable: set[str] = set()  # folders reported as such: nothing under them is
        self.own_index = identity(index) if index else None
        self.index_dirs: dict[str, bool] = {}  # directory -> is it a bienc index

    def plan(self, source: str) -> str | _GlobMatches:
        """A source checked before anything is yielded: UsageError for a bad one."""
        if os.path.lexists(source) or (may_exist(source) and not GLOB_MAGIC.intersection(source)):
            # (a path that cannot be examined is reported by the walk, as unreadable)
            index = self._enclosing_index(os.path.abspath(source))
            if index is not None:
                own = identity(index) == self.own_index
                if index == os.path.abspath(source):
                    what = "the --index folder itself" if own else "a bienc index"
                else:
                    where = "the --index folder" if own else "the bienc index"
                    what = f"inside {where} {index}"
                raise UsageError(
                    f"{source} is {what}; {_NEVER}: give the folders that hold your documents"
                )
            return source
        if not GLOB_MAGIC.intersection(source):
            raise UsageError(f"{source}: no such file or directory (check the path)")
        options = self.options
        matches = expand_glob(source, hidden=options.hidden, follow=options.follow_symlinks)
        if not matches:
            raise UsageError(
                f"the pattern '{source}' matches nothing (check it, or quote it so "
                "the shell does not expand it)"
            )
        return _GlobMatches(source, os.path.abspath(literal_prefix(source)), matches)

    def run(
        self, planned: list[str | _GlobMatches], stdin_paths: Iterable[str]
    ) -> Iterator[FileEntry | Skipped]:
        for item in planned:
            if isinstance(item, _GlobMatches):
                yield from self._glob(item)
            else:
                yield from self._explicit(item, missing="vanished")
        for path in stdin_paths:
            yield from self._explicit(path, missing="not found")

    # -- sources -------------------------------------------------------------------------------

    def _explicit(self, given: str, missing: str) -> Iterator[FileEntry | Skipped]:
        """A path named on the command line or stdin: never dropped by ignore/hidden rules,
        and followed when it is a symlink."""
        path = os.path.abspath(given)
        st = yield from self._stat(path, missing=missing)
        if st is None:
            return
        if stat.S_ISDIR(st.st_mode):
            chain = self.ignores.chain_for_root(path)
            yield from self._drain_ignore_problems()
            yield from self._walk(path, root=path, rel="", chain=chain)
        elif self._wanted_file(
            os.path.normpath(given).replace(os.sep, "/"), os.path.basename(path)
        ):
            if not (yield from self._in_an_index(path)):
                yield from self._file(path, st, root=path)

    def _glob(self, item: _GlobMatches) -> Iterator[FileEntry | Skipped]:
        root_chain = self.ignores.chain_for_root(item.root)
        walked: set[str] = set()
        for match, problem in item.matches:
            path = os.path.abspath(match)
            rel = os.path.relpath(path, item.root).replace(os.sep, "/")
            if rel.startswith("../"):  # a pattern like "a/../*" can leave its literal prefix
                yield from self._explicit(match, missing="vanished")
                continue
            if _under_any(path, walked, stop=item.root):
                continue  # "docs/*" lists folders of a tree that is walked already
            chain = self._allowed_below(item.root, rel, path, root_chain)
            yield from self._drain_ignore_problems()
            if chain is None:
                continue
            if problem is not None:
                yield from self._skip(path, problem.reason, error=problem.error, keep=problem.keep)
                continue
            st = yield from self._stat(path, missing="vanished")
            if st is None:
                continue
            if stat.S_ISDIR(st.st_mode):
                walked.add(path)
                yield from self._walk(path, item.root, "" if rel == "." else rel, chain)
            elif self._wanted_file(rel, os.path.basename(path)):
                if not (yield from self._in_an_index(path)):
                    yield from self._file(path, st, root=item.root)
        yield from self._drain_ignore_problems()

    def _allowed_below(self, root: str, rel: str, path: str, chain: Chain) -> Chain | None:
        """Apply ignore files and --exclude to each component of ``rel`` below ``root``.

        Returns the ignore chain for ``path`` (as a directory), or None when it is dropped.
        """
        if rel == ".":
            return chain
        parts = rel.split("/")
        current = root
        for i, part in enumerate(parts):
            current = os.path.join(current, part)
            is_dir = i < len(parts) - 1 or os.path.isdir(path)
            if part == ".git" or self.ignores.ignored(chain, current, is_dir):
                return None
            if is_dir:
                if self._excluded_dir("/".join(parts[: i + 1]), part):
                    return None
                chain = self.ignores.extend(chain, current)
        return chain

    # -- walking -------------------------------------------------------------------------------

    def _walk(self, start: str, root: str, rel: str, chain: Chain) -> Iterator[FileEntry | Skipped]:
        """Preorder, sorted by name; an explicit stack, so deep trees never hit recursion limits."""
        try:
            st = os.stat(start)
        except OSError as exc:
            yield from self._skip(start, os_reason(exc), error=True, keep=start)
            return
        entries = yield from self._list(start)
        if entries is None or (yield from self._an_index(start, st, entries)):
            return
        stack = [_Frame(start, rel, chain, frozenset({(st.st_dev, st.st_ino)}), iter(entries))]
        while stack:
            frame = stack[-1]
            entry = next(frame.entries, None)
            if entry is None:
                stack.pop()
                continue
            child = yield from self._entry(frame, entry, root)
            if child is not None:
                stack.append(child)

    def _entry(
        self, frame: _Frame, entry: os.DirEntry[str], root: str
    ) -> Generator[FileEntry | Skipped, None, _Frame | None]:
        """Yield what ``entry`` gives; return a frame when it is a directory to descend into."""
        name = entry.name
        if name == ".git" or (name.startswith(".") and not self.options.hidden):
            return None
        path = os.path.join(frame.path, name)
        rel = f"{frame.rel}/{name}" if frame.rel else name
        problem: OSError | None = None
        st: os.stat_result | None = None
        is_link = False
        try:
            is_link = entry.is_symlink()
            # A link's target decides whether folder-only rules ("build/") apply to it.
            st = os.stat(path) if is_link else entry.stat(follow_symlinks=False)
        except OSError as exc:
            problem = exc
        is_dir = st is not None and stat.S_ISDIR(st.st_mode)
        if self.ignores.ignored(frame.chain, path, is_dir):
            return None
        if is_dir and self._excluded_dir(rel, name):
            return None
        if not is_dir and not self._wanted_file(rel, name):
            return None
        if is_link and not self.options.follow_symlinks:
            yield from self._skip(path, DIR_NOT_FOLLOWED if is_dir else NOT_FOLLOWED, error=False)
            return None
        if st is None:
            assert problem is not None
            if isinstance(problem, FileNotFoundError) and not is_link:
                return None  # deleted since the directory was listed: nothing to report
            yield from self._stat_problem(path, problem, is_link)
            return None
        if not is_dir:
            yield from self._file(path, st, root)
            return None
        key = (st.st_dev, st.st_ino)
        if key in frame.ancestors:
            yield from self._skip(path, "symlink loop", error=False)
            return None
        entries = yield from self._list(path)
        if entries is None or (yield from self._an_index(path, st, entries)):
            return None
        chain = self.ignores.extend(frame.chain, path)
        yield from self._drain_ignore_problems()
        return _Frame(path, rel, chain, frame.ancestors | {key}, iter(entries))

    def _list(self, directory: str) -> Generator[Skipped, None, list[os.DirEntry[str]] | None]:
        """The sorted entries of ``directory`` (returned), or a Skipped saying why not."""
        try:
            with os.scandir(directory) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            # Not listed is not empty: what was indexed under it is kept.
            yield from self._skip(directory, os_reason(exc), error=True, keep=directory)
            return None
        return entries

    # -- bienc indexes -------------------------------------------------------------------------

    def _an_index(
        self, directory: str, st: os.stat_result, entries: list[os.DirEntry[str]]
    ) -> Generator[Skipped, None, bool]:
        """Whether ``directory`` is a bienc index, to leave out: the one being written
        silently, any other with a note."""
        if (st.st_dev, st.st_ino) == self.own_index:
            self.index_dirs[directory] = True
            return True
        names = {e.name for e in entries}
        found = self.index_dirs.setdefault(directory, store.is_bienc_index(directory, names))
        if found:
            yield from self._skip(directory, _AN_INDEX, error=False)
        return found

    def _enclosing_index(self, path: str) -> str | None:
        """``path`` itself or the folder above it that is a bienc index, if any."""
        current = path if os.path.isdir(path) else os.path.dirname(path)
        while True:
            if current not in self.index_dirs:
                self.index_dirs[current] = (
                    self.own_index is not None and identity(current) == self.own_index
                ) or store.is_bienc_index(current)
            if self.index_dirs[current]:
                return current
            parent = os.path.dirname(current)
            if parent == current:
                return None
            current = parent

    def _in_an_index(self, path: str) -> Generator[Skipped, None, bool]:
        """Whether the file ``path`` (named, or matched by a glob) lies inside a bienc index."""
        index = self._enclosing_index(path)
        if index is None:
            return False
        if identity(index) != self.own_index:
            yield from self._skip(path, f"inside a bienc index ({stored_path(index)}); {_NEVER}")
        return True

    # -- single items --------------------------------------------------------------------------

    def _stat(self, path: str, missing: str) -> Generator[Skipped, None, os.stat_result | None]:
        """``os.stat(path)`` (returned), or Skipped for a vanished path, broken link or loop."""
        try:
            return os.stat(path)
        except FileNotFoundError as exc:
            if not os.path.islink(path):
                yield from self._skip(path, missing, error=True)
                return None
            yield from self._stat_problem(path, exc, is_link=True)
        except OSError as exc:
            yield from self._stat_problem(path, exc, is_link=os.path.islink(path))
        return None

    def _stat_problem(self, path: str, exc: OSError, is_link: bool) -> Iterator[Skipped]:
        if exc.errno == errno.ELOOP:
            yield from self._skip(path, "symlink loop", error=False)
        elif is_link and isinstance(exc, FileNotFoundError):
            yield from self._skip(path, "broken symlink", error=True)
        else:  # could not look (permission denied, I/O error): keep what was indexed there
            yield from self._skip(path, os_reason(exc), error=True, keep=path)

    def _file(self, path: str, st: os.stat_result, root: str) -> Iterator[FileEntry | Skipped]:
        if path in self.seen:
            return
        if not stat.S_ISREG(st.st_mode):
            yield from self._skip(path, "not a regular file", error=False)
            return
        limit = self.options.max_file_size
        if st.st_size > limit and os.path.splitext(path)[1].lower() not in TABLE_SUFFIXES:
            yield from self._skip(
                path, f"larger than --max-file-size ({human_size(limit)})", error=False
            )
            return
        self.seen.add(path)
        yield FileEntry(path=path, size=st.st_size, mtime_ns=st.st_mtime_ns, root=root)

    def _skip(
        self, path: str, reason: str, *, error: bool = False, keep: str | None = None
    ) -> Iterator[Skipped]:
        if path in self.seen or (error and _under_any(path, self.unsearchable, stop=os.sep)):
            return  # said already, or as part of the folder that could not be searched
        self.seen.add(path)
        yield Skipped(path=path, reason=reason, error=error, keep=keep)

    def _drain_ignore_problems(self) -> Iterator[Skipped]:
        while self.ignores.problems:
            path, reason, keep = self.ignores.problems.pop(0)
            # Without its rules, files under it may look newly ignored: keep what was indexed.
            yield from self._skip(path, reason, error=True, keep=keep)
            if path == keep:
                self.unsearchable.add(path)

    # -- --include / --exclude -----------------------------------------------------------------

    def _wanted_file(self, rel: str, name: str) -> bool:
        if matches_any(self.exclude, rel, name):
            return False
        return not self.include or matches_any(self.include, rel, name)

    def _excluded_dir(self, rel: str, name: str) -> bool:
        # "drafts/**" must prune "drafts" itself: "*" matches the empty rest of "drafts/".
        return matches_any(self.exclude, rel, name) or matches_any(self.exclude, rel + "/", name)


_NEVER = "index folders are never indexed"
_AN_INDEX = f"a bienc index; {_NEVER}"


def _under_any(path: str, dirs: set[str], stop: str) -> bool:
    current = os.path.dirname(path)
    while dirs and len(current) >= len(stop):
        if current in dirs:
            return True
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    return False


def human_size(n: int) -> str:
    """``20971520`` → ``"20 MiB"``; ``1536`` → ``"1.5 KiB"``."""
    value = float(n)
    unit = "B"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            break
        value /= 1024
    return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
