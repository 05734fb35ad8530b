"""What `bienc index` is asked to do (IndexRequest, IndexSettings) and what one run did
(RunReport), and the callbacks it takes."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bienc_cli.encoding.encoder import Encoder
from bienc_cli.encoding.model import ModelInfo
from bienc_cli.errors import (
    ExitStatus,
)
from bienc_cli.inputs.documents import Note, Skipped, stored_path
from bienc_cli.inputs.sources import SourceOptions

# stage ("scan" | "encode"), items done so far, total if known
ProgressFn = Callable[[str, int, "int | None"], None]


EncoderFactory = Callable[[ModelInfo], Encoder]


# Options a user can set on the command line; what one run sets is stored in the manifest and
# reused by the next run unless that run sets it again (so cron can run plain `bienc index`):
# an option given replaces the remembered value, and `--no-include` and the like clear it.
SOURCE_OPTION_NAMES = tuple(f.name for f in dataclasses.fields(SourceOptions))


TABLE_OPTION_NAMES = ("text_columns", "id_column")


@dataclass(frozen=True)
class IndexSettings:
    overlap: int = 32  # tokens shared by consecutive chunks
    M: int = 16  # HNSW graph degree
    ef_construction: int = 200
    ef: int = 128  # default search breadth, stored in the manifest (hnswlib does not save it)
    batch_size: int = 32
    compact_ratio: float = 0.2  # rebuild the graph once this share of its items is deleted


@dataclass
class IndexRequest:
    root: Path
    sources: Sequence[str] = ()  # directories, files, glob patterns
    stdin_paths: Sequence[str] = ()  # paths read from stdin (`-`); not remembered
    model: str | None = None
    options: dict[str, Any] = field(default_factory=dict)  # only what the user set
    settings: IndexSettings = IndexSettings()
    backend: str | None = None  # auto | onnx | sentence-transformers; None: the index's, else auto
    overlap: int | None = None  # None: the index's stored value, else IndexSettings' default
    ef: int | None = None  # likewise
    rebuild: bool = False
    wait: float | None = None  # seconds to wait for the lock; None: as long as it takes


@dataclass
class RunReport:
    """What one `bienc index` run did. ``to_dict`` is the `--json` run report."""

    index: str
    added: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0
    chunks_encoded: int = 0
    chunks_reused: int = 0  # vectors taken from the index (unchanged chunk text)
    chunks_resumed: int = 0  # vectors taken from the cache of an interrupted run
    documents: int = 0  # in the index after the run
    chunks: int = 0
    compacted: bool = False
    generation: int | None = None  # None when nothing had to be written
    model: str = ""
    backend: str | None = None  # the encoder that ran, when one did
    seconds: float = 0.0
    skipped: list[Skipped] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)

    @property
    def errors(self) -> list[Skipped]:
        return [s for s in self.skipped if s.error]

    @property
    def exit_status(self) -> ExitStatus:
        return ExitStatus.PARTIAL if self.errors else ExitStatus.OK

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "status": "partial" if self.errors else "ok",
            "exit_code": int(self.exit_status),
            "generation": self.generation,
            "model": self.model,
            "backend": self.backend,
            "added": self.added,
            "updated": self.updated,
            "removed": self.removed,
            "unchanged": self.unchanged,
            "documents": self.documents,
            "chunks": self.chunks,
            "chunks_encoded": self.chunks_encoded,
            "chunks_reused": self.chunks_reused,
            "chunks_resumed": self.chunks_resumed,
            "compacted": self.compacted,
            "seconds": round(self.seconds, 3),
            "skipped": [
                {
                    "path": stored_path(s.path),
                    "row_id": s.row_id,
                    "reason": s.reason,
                    "error": s.error,
                }
                for s in self.skipped
            ],
            "notes": [{"path": stored_path(n.path), "message": n.message} for n in self.notes],
        }
