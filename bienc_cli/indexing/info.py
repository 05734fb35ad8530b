"""`bienc info`: what an index holds, and whether its sources changed since it was built."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from bienc_cli.indexing.plan import existing_roots, remembered_options
from bienc_cli.inputs.documents import Skipped, real_path, stored_path
from bienc_cli.inputs.sources import SourceOptions, discover
from bienc_cli.store import generations as store
from bienc_cli.store import layout


def index_info(root: Path, *, stale: bool = True, stale_limit: int = 20) -> dict[str, Any]:
    """A summary of the live generation; with ``stale``, compares the sources on disk to it."""
    generation = store.open_index(root)
    manifest = generation.manifest
    model, counts, hnsw = manifest["model"], manifest["counts"], manifest["hnsw"]
    info: dict[str, Any] = {
        "index": str(root),
        "generation": manifest["generation"],
        "model": model["name"],
        "model_path": model["path"],
        "dim": model["dim"],
        "backend": model.get("backend", "sentence-transformers"),
        "documents": counts["documents"],
        "chunks": counts["chunks"],
        "deleted_not_compacted": counts["deleted"],
        "size_bytes": layout.disk_usage(generation.dir),
        "created_at": manifest["created_at"],
        "updated_at": manifest["updated_at"],
        "bienc_version": manifest["bienc_version"],
        "format_version": manifest["format_version"],
        "chunking": manifest["chunking"],
        "hnsw": {k: hnsw[k] for k in ("space", "M", "ef_construction", "ef")},
        "sources": manifest["sources"]["roots"],
        # what a plain `bienc index` reads them with (give an option to replace one)
        "options": remembered_options(manifest),
    }
    if stale:
        info["stale"] = _stale(generation, stale_limit)
    return info


def _stale(generation: store.Generation, limit: int) -> dict[str, Any]:
    """Files added, changed or removed under the index's roots since it was written.

    Compares size and modification time only (reading files would make `info` as slow as
    `index`); a touched but identical file counts as changed, as it would for make.
    """
    indexed = {}
    table = generation.read_sidecar(columns=("path", "size", "mtime_ns"))
    for path, size, mtime in zip(*(table[c].to_pylist() for c in ("path", "size", "mtime_ns"))):
        indexed[real_path(path)] = (size, mtime)
    skipped = {p: tuple(stat) for p, stat in generation.manifest.get("skipped_files", {}).items()}
    stored = generation.manifest["sources"]
    names = {f.name for f in dataclasses.fields(SourceOptions)}
    options = SourceOptions(**{k: _tuple(v) for k, v in stored["options"].items() if k in names})
    added, changed, seen = [], [], set()
    roots = existing_roots(stored["roots"], options)
    for item in discover(roots, options, index=str(generation.root)):
        if isinstance(item, Skipped):
            continue
        seen.add(item.path)
        if item.path in skipped and skipped[item.path] == (item.size, item.mtime_ns):
            continue
        if item.path not in indexed:
            added.append(item.path)
        elif indexed[item.path] != (item.size, item.mtime_ns):
            changed.append(item.path)
    removed = sorted(p for p in indexed if p not in seen)
    return {
        "is_stale": bool(added or changed or removed),
        "added": len(added),
        "changed": len(changed),
        "removed": len(removed),
        "examples": [stored_path(p) for p in sorted(added + changed)[:limit] + removed[:limit]],
    }


def _tuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value
