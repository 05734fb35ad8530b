""".gitignore and .biencignore: the rules a walk honours, with git's semantics.

A chain holds the specs of the directories from the enclosing git repository's root down to
the directory being walked; the deepest file with a matching pattern decides. Ignore files
that cannot be read are kept as problems for the report, never raised.
"""

from __future__ import annotations

import os

import pathspec

from bienc_cli.inputs.documents import os_reason

IGNORE_FILES = (".gitignore", ".biencignore")  # later files win: .biencignore overrides .gitignore

# An ignore chain: (directory, spec) for each directory with ignore files, outermost first.
Chain = tuple[tuple[str, pathspec.GitIgnoreSpec], ...]


class IgnoreFiles:
    """.gitignore/.biencignore specs, loaded once per directory."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._specs: dict[str, pathspec.GitIgnoreSpec | None] = {}
        # what could not be read, for the report: (path, reason, where to keep what was indexed)
        self.problems: list[tuple[str, str, str]] = []

    def chain_for_root(self, root: str) -> Chain:
        """The chain for a walk from ``root``: its parents up to the git repo root, then itself.

        When a parent's rules ignore ``root`` itself, the parents are left out: the user asked
        for this directory by name, and pathspec would otherwise drop everything below it.
        """
        if not self.enabled:
            return ()
        chain: Chain = ()
        for parent in _parents_in_repo(root):
            chain = self.extend(chain, parent)
        if chain and self.ignored(chain, root, is_dir=True):
            chain = ()
        return self.extend(chain, root)

    def extend(self, chain: Chain, directory: str) -> Chain:
        spec = self._spec(directory)
        return chain + ((directory, spec),) if spec is not None else chain

    def ignored(self, chain: Chain, path: str, is_dir: bool) -> bool:
        # Git semantics across files: the deepest file with a matching pattern decides;
        # within one file, the last matching pattern (check_file does that, negation included).
        for base, spec in reversed(chain):
            rel = _relative(path, base)
            result = spec.check_file(rel + "/" if is_dir else rel)
            if result.include is not None:
                return bool(result.include)
        return False

    def _spec(self, directory: str) -> pathspec.GitIgnoreSpec | None:
        if not self.enabled:
            return None
        if directory not in self._specs:
            lines: list[str] = []
            for name in IGNORE_FILES:
                path = os.path.join(directory, name)
                try:
                    with open(path, "rb") as f:
                        data = f.read()
                except FileNotFoundError:
                    continue
                except OSError as exc:
                    if isinstance(exc, PermissionError) and _unsearchable(directory, name):
                        # Nothing in the folder can be looked at, its ignore files (which may
                        # not exist) no more than its documents: the folder's problem, named
                        # as a folder root is.
                        self.problems.append((directory, os_reason(exc), directory))
                        break
                    reason = f"ignore file unreadable: {os_reason(exc)}"
                    self.problems.append((path, reason, directory))
                    continue
                lines.extend(os.fsdecode(data).splitlines())
            self._specs[directory] = pathspec.GitIgnoreSpec.from_lines(lines) if lines else None
        return self._specs[directory]


def _unsearchable(directory: str, name: str) -> bool:
    """Whether ``name`` in ``directory`` cannot even be examined: the folder is not searchable
    (an unreadable file itself can be)."""
    try:
        os.stat(os.path.join(directory, name))
    except PermissionError:
        return True
    except OSError:
        pass
    return False


def _parents_in_repo(root: str) -> list[str]:
    """Directories from the enclosing git repo root down to ``root``'s parent, outermost first."""
    parents = []
    current = os.path.dirname(root)
    if os.path.lexists(os.path.join(root, ".git")):
        return []
    while True:
        parents.append(current)
        if os.path.lexists(os.path.join(current, ".git")):
            return parents[::-1]
        parent = os.path.dirname(current)
        if parent == current:
            return []  # not inside a git repository: only the walk's own ignore files count
        current = parent


def _relative(path: str, base: str) -> str:
    rel = path[len(base) :].lstrip(os.sep)
    return rel.replace(os.sep, "/") if os.sep != "/" else rel
