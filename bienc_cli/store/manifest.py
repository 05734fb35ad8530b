"""manifest.json: written last into a generation, it records everything hnswlib does not
(space, dim, ef), the model, the counts, the sources, and the checksums of the other files."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bienc_cli import __version__
from bienc_cli.errors import IncompatibleIndex, IndexCorrupt
from bienc_cli.store.layout import FORMAT, FORMAT_VERSION, onnx_dir

if TYPE_CHECKING:
    from bienc_cli.encoding.model import ModelInfo


def build_manifest(
    old: dict[str, Any] | None,
    *,
    model: ModelInfo,
    backend: str,
    overlap: int,
    hnsw: dict[str, Any],
    counts: dict[str, Any],
    sources: dict[str, Any],
    skipped_files: dict[str, list[int]],
    skipped_rows: dict[str, list[dict[str, Any]]],
    last_run: dict[str, int],
) -> dict[str, Any]:
    """The manifest of a new generation (``write_generation`` adds its number and the files'
    checksums). ``old`` is the previous generation's, whose creation time it keeps;
    ``backend`` is the one queries use; ``hnsw`` comes from ``graph.manifest_params``."""
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "bienc_version": __version__,
        "created_at": old["created_at"] if old else now,
        "updated_at": now,
        "model": {
            "name": model.name,
            "path": model.path,
            "fingerprint": model.fingerprint,
            "dim": model.dim,
            "max_seq_length": model.max_seq_length,
            "pooling": model.pooling,
            "normalize": True,  # bienc stores unit vectors whatever the model does
            "backend": backend,  # what queries use
            "backend_choice": model.backend,  # what the next run encodes with, unless told
            "onnx_dir": str(onnx_dir(Path(), model.fingerprint, backend)),
        },
        "chunking": {"tokenizer": "model", "max_tokens": model.max_seq_length, "overlap": overlap},
        "hnsw": hnsw,
        "counts": counts,
        "sources": sources,
        # Files skipped on purpose (empty, binary, too large), so `info` does not call them new.
        "skipped_files": skipped_files,
        # What the reading of each indexed file skipped, reported again while it is unchanged.
        "skipped_rows": skipped_rows,
        "last_run": last_run,
    }


def check_format(root: Path, manifest: dict[str, Any]) -> None:
    if manifest.get("format") != FORMAT:
        raise IndexCorrupt(f"{root} does not hold a bienc index")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise IncompatibleIndex(
            f"index at {root} uses format version {version}; this bienc (v{__version__}) reads "
            f"version {FORMAT_VERSION}: rebuild it with `bienc index --rebuild`"
        )


def checksums(folder: Path, names: Sequence[str]) -> dict[str, dict[str, Any]]:
    out = {}
    for name in names:
        digest = hashlib.sha256()
        with open(folder / name, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        out[name] = {"bytes": (folder / name).stat().st_size, "sha256": digest.hexdigest()}
    return out
