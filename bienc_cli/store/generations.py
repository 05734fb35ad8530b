"""Generations: a complete, readable state of an index, and how a writer replaces one.

A writer builds a new generation folder beside the live one, fsyncs it, and only then points
CURRENT at it. A crash at any moment leaves CURRENT naming a complete generation, so readers
never see a mix. The previous generation is kept one step, for readers that opened it just
before the switch; older ones are removed.

The graph holds one item per distinct vector: chunks whose vectors are identical (license
headers, boilerplate, a repeated line) share the item named by their ``vector_label``. Many
identical items would trap hnswlib's greedy search among them, away from the right answer.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bienc_cli.errors import IndexCorrupt, IndexNotFound
from bienc_cli.store import graph, sidecar
from bienc_cli.store.layout import (
    CURRENT,
    LOOKUP,
    MANIFEST,
    MODELS,
    SIDECAR,
    TMP_CURRENT,
    VECTORS,
    current_name,
    generation_dirs,
    generation_names,
    generation_number,
    is_temporary,
    storage_error,
)
from bienc_cli.store.manifest import check_format, checksums
from bienc_cli.util.fs import fsync_dir

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa


@dataclass
class Generation:
    """A complete, readable generation of an index."""

    root: Path  # the index folder
    dir: Path  # the generation folder
    manifest: dict[str, Any]

    @property
    def dim(self) -> int:
        return int(self.manifest["model"]["dim"])

    @property
    def live_count(self) -> int:
        return int(self.manifest["counts"]["chunks"])

    @property
    def vector_count(self) -> int:
        """Live graph items: the distinct vectors (older manifests: one per chunk)."""
        counts = self.manifest["counts"]
        return int(counts.get("vectors", counts["chunks"]))

    def load_hnsw(self, *, capacity: int | None = None) -> graph.Graph:
        """The HNSW graph, with ``ef`` restored (hnswlib does not persist it)."""
        return graph.load(self.dir / VECTORS, self.manifest["hnsw"], self.dim, capacity=capacity)

    def items(self) -> tuple[np.ndarray, np.ndarray]:
        """Labels and unit vectors of every live item of the graph (for exact search)."""
        return graph.graph_items(self.dir / VECTORS, self.dim)

    def lookup(
        self, labels: Sequence[int], columns: Sequence[str] = sidecar.LOOKUP_COLUMNS
    ) -> dict[int, dict]:
        """Sidecar rows by label, without pyarrow (the query path's way in)."""
        return sidecar.lookup(self.dir, labels, columns)

    def scan_lookup(self, columns: Sequence[str]) -> Iterator[sqlite3.Row]:
        """Every row's ``columns``, in label order, without pyarrow."""
        return sidecar.scan_lookup(self.dir, columns)

    def members(self, vector_labels: Sequence[int]) -> dict[int, list[int]]:
        """The labels of the chunks whose vector is each graph item, in label order."""
        return sidecar.members(self.dir, vector_labels)

    def read_sidecar(self, columns: Sequence[str] | None = None, filters: Any = None) -> pa.Table:
        """The sidecar's ``columns`` (all by default); see ``sidecar.read``."""
        return sidecar.read(self.dir, columns, filters)


def row_vectors(generation: Generation, vector_labels: Sequence[int]) -> np.ndarray:
    """The stored vectors of chunks with these ``vector_label``s, one row each, in order:
    each graph item is read once however many chunks share it."""
    import numpy as np

    if not len(vector_labels):  # without loading the graph
        return np.zeros((0, generation.dim), np.float32)
    return graph.item_vectors(generation.load_hnsw(), vector_labels)


@dataclass
class DocumentVectors:
    """One vector per document: the token-weighted mean of its chunk vectors, re-normalised.

    Weighting by tokens keeps a short tail chunk from counting as much as a full one. Rows
    are in the order of ``doc_ids``; ``table`` holds each document's first chunk's sidecar
    row (path, row_id, size, mtime_ns, doc_hash, meta ...) in the same order.
    """

    doc_ids: list[str]
    vectors: np.ndarray  # float32 (n_documents, dim), unit length
    table: pa.Table


def document_vectors(
    generation: Generation, columns: Sequence[str] | None = None
) -> DocumentVectors:
    """Document-level vectors from the stored chunk vectors: nothing is encoded again."""
    import numpy as np
    import pyarrow as pa

    if columns is not None:
        columns = list(
            dict.fromkeys(["label", "vector_label", "doc_id", "chunk", "n_tokens", *columns])
        )
    table = generation.read_sidecar(columns=columns)
    table = table.sort_by([("doc_id", "ascending"), ("chunk", "ascending")])
    if table.num_rows == 0:
        return DocumentVectors([], np.zeros((0, generation.dim), np.float32), table)
    chunk_vectors = row_vectors(generation, table["vector_label"].to_numpy())
    weights = np.maximum(table["n_tokens"].to_numpy(zero_copy_only=False), 1).astype(np.float32)
    doc_ids = table["doc_id"].to_pylist()
    starts = [0] + [i for i in range(1, len(doc_ids)) if doc_ids[i] != doc_ids[i - 1]]
    sums = np.add.reduceat(chunk_vectors * weights[:, None], starts, axis=0)
    norms = np.linalg.norm(sums, axis=1, keepdims=True)
    vectors = (sums / np.maximum(norms, 1e-12)).astype(np.float32)
    first_rows = table.take(pa.array(starts))
    return DocumentVectors([doc_ids[i] for i in starts], vectors, first_rows)


def open_index(root: Path) -> Generation:
    """The live generation of the index at ``root``.

    Raises IndexNotFound, IndexCorrupt, or IncompatibleIndex for another format version.
    """
    for attempt in range(3):
        try:
            name = (root / CURRENT).read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            if generation_dirs(root):
                raise IndexCorrupt(
                    f"{root}/{CURRENT} is missing; rebuild with `bienc index --rebuild`"
                ) from None
            raise IndexNotFound(
                f"no bienc index at {root}; create one with `bienc index SOURCE --index {root}`"
            ) from None
        except OSError as exc:
            raise IndexCorrupt(f"cannot read {root / CURRENT}: {exc.strerror}") from exc
        try:
            manifest = json.loads((root / name / MANIFEST).read_text(encoding="utf-8"))
        except FileNotFoundError:
            # A writer may have switched generations and removed this one between our two
            # reads; CURRENT then names a newer one. Try again before calling it damaged.
            if attempt < 2:
                time.sleep(0.05)
                continue
            raise IndexCorrupt(f"{root / name / MANIFEST} is missing") from None
        except (OSError, ValueError) as exc:
            raise IndexCorrupt(f"cannot read {root / name / MANIFEST}: {exc}") from exc
        check_format(root, manifest)
        return Generation(root=root, dir=root / name, manifest=manifest)
    raise AssertionError("unreachable")


def write_generation(
    root: Path, hnsw: graph.Graph, table: pa.Table, manifest: dict[str, Any]
) -> Path:
    """Write a complete new generation and make it the live one. Call under ``write_lock``.

    Everything is written into a temporary folder, fsynced, renamed to its final name, and
    only then published by replacing CURRENT; a failure at any step leaves the previous
    generation live and removes the partial one.
    """
    table = sidecar.with_vector_labels(table)
    live = current_name(root)  # kept for readers that opened it
    number = _next_generation_number(root)
    final = root / f"g{number:06d}"
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-g{number:06d}-", dir=root))
    try:
        hnsw.save_index(str(tmp / VECTORS))
        sidecar.write(tmp, table)
        files = checksums(tmp, (VECTORS, SIDECAR, LOOKUP))
        manifest = dict(manifest, generation=number, files=files)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        for name in (VECTORS, SIDECAR, LOOKUP, MANIFEST):
            _fsync_file(tmp / name)
        fsync_dir(tmp)
        os.rename(tmp, final)
        publish(root, final.name)
    except (OSError, sqlite3.Error) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if current_name(root) != final.name:  # renamed but never published
            shutil.rmtree(final, ignore_errors=True)
        raise storage_error(root, exc) from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    # Not simply the newest older folder: a run killed between its rename and publish
    # leaves a complete generation that was never live.
    _remove_old_generations(root, keep={final.name, live} if live else {final.name})
    return final


def publish(root: Path, name: str) -> None:
    tmp = root / TMP_CURRENT
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(name + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, root / CURRENT)  # atomic: readers see the old name or the new one
    fsync_dir(root)


def _next_generation_number(root: Path) -> int:
    names = generation_names(root)
    return generation_number(names[-1]) + 1 if names else 1


def _remove_old_generations(root: Path, keep: set[str]) -> None:
    """Remove superseded generations and leftovers of interrupted writes (best effort).

    Only what a writer provably made: folders named like a generation that hold a bienc
    manifest, and the writer's temporary names; anything else in the folder stays.
    """
    for path in generation_dirs(root):
        if path.name not in keep:
            shutil.rmtree(path, ignore_errors=True)
    for path in root.iterdir():
        if is_temporary(path):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    path.unlink()
    models = root / MODELS
    # ONNX exports or quantisations killed midway (see encoding/onnx_folder.py)
    if models.is_dir():
        for path in models.iterdir():
            if path.name.startswith(".") and (".tmp-" in path.name or ".old-" in path.name):
                shutil.rmtree(path, ignore_errors=True)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def chunk_vectors(generation: Generation) -> tuple[np.ndarray, np.ndarray]:
    """Every live chunk's label and stored vector (unit length), read back from the graph.

    For exact (brute-force) search, e.g. to measure what the approximate graph misses.
    """
    import numpy as np

    table = generation.read_sidecar(columns=("label", "vector_label"))
    labels = table["label"].to_numpy().astype(np.uint64)
    return labels, row_vectors(generation, table["vector_label"].to_numpy())
