"""What plans and journals share on disk: format version, timestamps, file names in JSON."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from bienc_cli.inputs.documents import real_path, stored_path

FORMAT_VERSION = 1


def now() -> str:
    """The time a plan or journal entry records: UTC, ISO 8601, to the second."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def stored(value: Any) -> Any:
    """``value`` fit for a plan or journal, which are UTF-8 JSON: each string as
    ``documents.stored_path`` writes it (a file name that is not UTF-8 becomes a file://
    URL of its bytes; any other string stays as it is). ``real`` reverses it."""
    if isinstance(value, str):
        return stored_path(value)
    if isinstance(value, dict):
        return {k: stored(v) for k, v in value.items()}
    if isinstance(value, list):
        return [stored(v) for v in value]
    return value


def real(value: Any) -> Any:
    """``value`` as read from a plan or journal, with the real paths ``stored`` wrote."""
    if isinstance(value, str):
        return real_path(value)
    if isinstance(value, dict):
        return {k: real(v) for k, v in value.items()}
    if isinstance(value, list):
        return [real(v) for v in value]
    return value
