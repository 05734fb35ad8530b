"""bienc's exceptions and the exit codes they map to.

The library raises these; the CLI turns each into a one-line message on stderr and its exit
code, in one place (``cli.options.handle_errors``). Messages say how to fix the problem.
"""

from __future__ import annotations

from enum import IntEnum


class ExitStatus(IntEnum):
    """Exit codes, grep-style for the first three. Documented in the README."""

    OK = 0  # success; for query: at least one result
    NO_RESULTS = 1  # query ran fine but nothing matched (like grep)
    USAGE = 2  # bad option, bad argument, unreadable input given on the command line
    PARTIAL = 3  # index finished, but some sources could not be read (listed in the report)
    NO_INDEX = 4  # no index at the given location, or it is unreadable or damaged
    INCOMPATIBLE = 5  # index built with another model, dimension or format version
    MODEL_UNAVAILABLE = 6  # the model could not be found or loaded
    LOCKED = 7  # another writer holds the index lock (--no-wait, or --wait expired)
    IO_ERROR = 8  # the environment failed: disk full, read-only or permission denied on the index
    INTERRUPTED = 130  # Ctrl-C / SIGINT (128 + 2, as shells report it)


class BiencError(Exception):
    """Base class: a failure the user can cause and fix. ``str()`` is the one-line message."""

    exit_status = ExitStatus.USAGE


class UsageError(BiencError):
    """Bad options or arguments: a glob that matches nothing, a missing column, a bad --where."""

    exit_status = ExitStatus.USAGE


class IndexNotFound(BiencError):
    """There is no bienc index at the given location."""

    exit_status = ExitStatus.NO_INDEX


class IndexCorrupt(BiencError):
    """The index exists but cannot be read: a file is missing, truncated or fails its checksum."""

    exit_status = ExitStatus.NO_INDEX


class IncompatibleIndex(BiencError):
    """The index was built with another model or dimension, or by an unknown format version."""

    exit_status = ExitStatus.INCOMPATIBLE


class ModelUnavailable(BiencError):
    """The model cannot be found locally, downloaded, or loaded."""

    exit_status = ExitStatus.MODEL_UNAVAILABLE


class IndexLocked(BiencError):
    """Another bienc process is writing this index and we were told not to wait (longer)."""

    exit_status = ExitStatus.LOCKED


class StorageError(BiencError):
    """Writing the index failed because of the environment (disk full, read-only, permissions)."""

    exit_status = ExitStatus.IO_ERROR
