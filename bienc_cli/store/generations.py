"""The index on disk: generations, the manifest, the sidecar and the HNSW graph.

Layout of an index folder::

    INDEX/
      CURRENT          name of the live generation, replaced atomically (write + rename)
      lock             writers hold an exclusive flock on it
      g000007/         one complete generation
        vectors.hnsw   hnswlib graph, cosine space
        chunks.parquet the sidecar: one row per chunk, keyed by ``label``
        manifest.json  written last: everything hnswlib does not record, and file checksums

The graph holds one item per distinct vector: chunks whose vectors are identical (license
headers, boilerplate, a repeated line) share the item named by their ``vector_label``. Many
identical items would trap hnswlib's greedy search among them, away from the right answer.

A writer builds a new generation folder beside the live one, fsyncs it, and only then points
CURRENT at it. A crash at any moment leaves CURRENT naming a complete generation, so readers
never see a mix. The previous generation is kept one step, for readers that opened it just
before the switch; older ones are removed.

This is the only module that imports hnswlib, and hnswlib's cosine distance (1 - cos) is
turned into a similarity here and nowhere else.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bienc_cli import __version__
from bienc_cli.errors import (
    IncompatibleIndex,
    IndexCorrupt,
    IndexLocked,
    IndexNotFound,
    StorageError,
    UsageError,
)

if TYPE_CHECKING:
    import hnswlib
    import numpy as np
    import pyarrow as pa

FORMAT = "bienc-index"
FORMAT_VERSION = 1
CURRENT = "CURRENT"
LOCK = "lock"
MANIFEST = "manifest.json"
VECTORS = "vectors.hnsw"
SIDECAR = "chunks.parquet"
LOOKUP = "lookup.sqlite"
# The columns a query shows, copied from the sidecar into LOOKUP so that the query path can
# fetch its hits by label with the standard library's sqlite3 instead of importing pyarrow.
LOOKUP_COLUMNS = (
    "label", "doc_id", "path", "row_id", "kind", "chunk", "n_chunks",
    "char_start", "char_end", "line_start", "line_end", "text", "meta",
)  # fmt: skip
DEFAULT_INDEX = ".bienc"
CACHE = "cache"
MODELS = "models"  # INDEX/models/<fingerprint>/: the model's ONNX export, shared by generations
# What a writer names its folders: g000001 ... (more digits past a million generations), and
# the temporary folder a generation is written in (tempfile.mkdtemp's random suffix).
_GENERATION = re.compile(r"g\d{6,}")
_TMP_GENERATION = re.compile(r"\.tmp-g\d{6,}-\w+")
_TMP_CURRENT = f".{CURRENT}.tmp"
_LOCK_TEXT = re.compile(rb"\d*\n?")  # what write_lock writes into the lock: a pid, or nothing yet


def onnx_dir(root: Path, fingerprint: str, backend: str | None = None) -> Path:
    """Where the index keeps its ONNX export of a model (the int8 copy beside the fp32 one)."""
    return root / MODELS / (f"{fingerprint}-int8" if backend == "onnx-int8" else fingerprint)


def index_path(option: str | None) -> Path:
    """The index folder: --index, else $BIENC_INDEX, else ./.bienc."""
    return Path(option or os.environ.get("BIENC_INDEX") or DEFAULT_INDEX)


def sidecar_schema() -> pa.Schema:
    """The sidecar's explicit schema (format version 1). Documented in the README."""
    import pyarrow as pa

    return pa.schema(
        [
            ("label", pa.int64()),  # the chunk's label, unique in the generation
            # the graph item holding the chunk's vector, shared by identical vectors; null
            # or missing (indexes written before bienc kept one item per vector) = label
            ("vector_label", pa.int64()),
            ("doc_id", pa.string()),  # absolute path, or "path#row_id" for table rows
            ("path", pa.string()),  # absolute path of the source file
            ("row_id", pa.string()),  # table rows only
            ("kind", pa.string()),  # text | markdown | rst | code | html | pdf | table
            ("chunk", pa.int32()),  # 0-based chunk number within the document
            ("n_chunks", pa.int32()),
            ("char_start", pa.int64()),  # offsets into the document's extracted text
            ("char_end", pa.int64()),
            ("line_start", pa.int32()),  # 1-based, inclusive
            ("line_end", pa.int32()),
            ("n_tokens", pa.int32()),
            ("doc_hash", pa.string()),  # sha256 of the document's text (hex, 32 chars)
            ("chunk_hash", pa.string()),  # sha256 of the chunk's text (hex, 32 chars)
            ("size", pa.int64()),  # source file size, bytes
            ("mtime_ns", pa.int64()),  # source file modification time
            ("encoding", pa.string()),
            ("text", pa.string()),  # the chunk's text, exactly as encoded
            ("meta", pa.string()),  # table rows: the other columns, as a JSON object
        ]
    )


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

    def load_hnsw(self, *, capacity: int | None = None) -> hnswlib.Index:
        """The HNSW graph, with ``ef`` restored (hnswlib does not persist it)."""
        import hnswlib

        params = self.manifest["hnsw"]
        index = hnswlib.Index(space=params["space"], dim=self.dim)
        path = self.dir / VECTORS
        try:
            index.load_index(str(path), max_elements=max(capacity or 0, params["max_elements"]))
        except (RuntimeError, OSError) as exc:
            raise IndexCorrupt(f"cannot load {path}: {exc}; run `bienc index --rebuild`") from exc
        index.set_ef(int(params["ef"]))
        return index

    def items(self) -> tuple[np.ndarray, np.ndarray]:
        """Labels and unit vectors of every live item of the graph (for exact search)."""
        return graph_items(self.dir / VECTORS, self.dim)

    def lookup(
        self, labels: Sequence[int], columns: Sequence[str] = LOOKUP_COLUMNS
    ) -> dict[int, dict]:
        """Sidecar rows by label, without pyarrow (the query path's way in)."""
        out: dict[int, dict] = {}
        with self._lookup_db() as db:
            wanted = _select(db, dict.fromkeys(["label", *columns]))
            labels = list(labels)
            for start in range(0, len(labels), 900):  # SQLite's bound-parameter limit
                part = labels[start : start + 900]
                sql = f"SELECT {wanted} FROM chunks WHERE label IN ({','.join('?' * len(part))})"
                for row in db.execute(sql, part):
                    out[row["label"]] = dict(row)
        return out

    def scan_lookup(self, columns: Sequence[str]) -> Iterator[sqlite3.Row]:
        """Every row's ``columns``, in label order, without pyarrow."""
        with self._lookup_db() as db:
            yield from db.execute(f"SELECT {_select(db, columns)} FROM chunks ORDER BY label")

    def members(self, vector_labels: Sequence[int]) -> dict[int, list[int]]:
        """The labels of the chunks whose vector is each graph item, in label order."""
        out: dict[int, list[int]] = {}
        with self._lookup_db() as db:
            column = "vector_label" if _has_vector_labels(db) else "label"
            vector_labels = list(vector_labels)
            for start in range(0, len(vector_labels), 900):  # SQLite's bound-parameter limit
                part = vector_labels[start : start + 900]
                sql = (
                    f"SELECT label, {column} FROM chunks "
                    f"WHERE {column} IN ({','.join('?' * len(part))}) ORDER BY label"
                )
                for label, vector_label in db.execute(sql, part):
                    out.setdefault(vector_label, []).append(label)
        return out

    @contextlib.contextmanager
    def _lookup_db(self) -> Iterator[sqlite3.Connection]:
        path = self.dir / LOOKUP
        if not path.exists():
            raise IndexCorrupt(f"{path} is missing; run `bienc index --rebuild`")
        # immutable: generation files never change, so SQLite may skip all locking.
        db = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
        db.row_factory = sqlite3.Row
        try:
            yield db
        except sqlite3.DatabaseError as exc:
            raise IndexCorrupt(f"cannot read {path}: {exc}; run `bienc index --rebuild`") from exc
        finally:
            db.close()

    def read_sidecar(self, columns: Sequence[str] | None = None, filters: Any = None) -> pa.Table:
        """The sidecar's ``columns`` (all by default), with ``vector_label`` filled in where
        an older index has none (see ``with_vector_labels``)."""
        import pyarrow.parquet as pq

        path = self.dir / SIDECAR
        wanted = list(columns) if columns else sidecar_schema().names
        try:
            stored = pq.read_schema(path).names
            read = [c for c in wanted if c != "vector_label" or c in stored]
            if "vector_label" in wanted and "label" not in read:
                read.append("label")
            table = pq.read_table(path, columns=read, filters=filters)
        except (OSError, ValueError) as exc:
            raise IndexCorrupt(f"cannot read {path}: {exc}; run `bienc index --rebuild`") from exc
        if "vector_label" in wanted:
            table = with_vector_labels(table)
        return table.select(wanted)


def with_vector_labels(table: pa.Table) -> pa.Table:
    """``table`` with its ``vector_label`` column complete: a chunk without one (an index
    written before identical vectors shared a graph item) has its vector at its own label."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if "vector_label" not in table.column_names:
        position = table.column_names.index("label") + 1
        return table.add_column(position, pa.field("vector_label", pa.int64()), table["label"])
    if table["vector_label"].null_count == 0:
        return table
    filled = pc.coalesce(table["vector_label"], table["label"])
    return table.set_column(table.column_names.index("vector_label"), "vector_label", filled)


def _has_vector_labels(db: sqlite3.Connection) -> bool:
    """Whether the lookup has a ``vector_label`` column (older ones have none: = label)."""
    return any(row[1] == "vector_label" for row in db.execute("PRAGMA table_info(chunks)"))


def _select(db: sqlite3.Connection, columns: Sequence[str]) -> str:
    """``columns`` as an SQL select list, reading an older lookup's label as its vector_label."""
    if "vector_label" not in columns or _has_vector_labels(db):
        return ", ".join(columns)
    return ", ".join("label AS vector_label" if c == "vector_label" else c for c in columns)


def row_vectors(generation: Generation, vector_labels: Sequence[int]) -> np.ndarray:
    """The stored vectors of chunks with these ``vector_label``s, one row each, in order:
    each graph item is read once however many chunks share it."""
    import numpy as np

    if not len(vector_labels):
        return np.zeros((0, generation.dim), np.float32)
    items, rows = np.unique(np.asarray(vector_labels, np.uint64), return_inverse=True)
    vectors = generation.load_hnsw().get_items(items, return_type="numpy")
    return np.ascontiguousarray(vectors[rows], dtype=np.float32)


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


def check_format(root: Path, manifest: dict[str, Any]) -> None:
    if manifest.get("format") != FORMAT:
        raise IndexCorrupt(f"{root} does not hold a bienc index")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise IncompatibleIndex(
            f"index at {root} uses format version {version}; this bienc (v{__version__}) reads "
            f"version {FORMAT_VERSION}: rebuild it with `bienc index --rebuild`"
        )


def similarities(distances: np.ndarray) -> np.ndarray:
    """hnswlib's cosine distance is 1 - cos; bienc reports cosine similarity."""
    return 1.0 - distances


def new_hnsw(dim: int, capacity: int, *, M: int, ef_construction: int) -> hnswlib.Index:
    import hnswlib

    index = hnswlib.Index(space="cosine", dim=dim)
    index.init_index(max_elements=max(capacity, 1), ef_construction=ef_construction, M=M)
    return index


def knn(
    index: hnswlib.Index, vectors: np.ndarray, k: int, *, live: int, filter=None, fallback=True
):
    """Labels and cosine similarities of the ``k`` nearest items.

    ``k`` is clamped to the live count. hnswlib raises "Cannot return the results in a
    contiguous 2D array" when its greedy search reaches fewer than ``k`` items for any of
    the queries, which happens on graphs over many near-identical vectors (boilerplate,
    repeated chunks). Then the search is widened once and, where that is not enough, the
    queries are answered in blocks: by the graph where it can, exactly where it cannot.
    Up to EXACT_SEARCH_LIMIT live items the search is exact (the graph can be trapped among
    identical vectors and still return k items, wrong ones).
    ``fallback=False`` (measuring the graph itself) keeps the search as it was and marks
    the blocks it cannot answer as found nothing: labels ``NOT_FOUND``, scores -inf.
    """
    import numpy as np

    k = max(0, min(k, live))
    if k == 0:
        return np.zeros((len(vectors), 0), dtype=np.uint64), np.zeros((len(vectors), 0))
    if fallback and live <= EXACT_SEARCH_LIMIT:
        candidates = unit_items(
            index, [i for i in live_labels(index) if filter is None or filter(i)]
        )
        return _exact_in_blocks(candidates, vectors, k)
    if index.ef < k:
        index.set_ef(k)
    try:
        labels, distances = index.knn_query(vectors, k=k, filter=filter)
        return labels, similarities(distances)
    except RuntimeError:
        pass
    if fallback:
        index.set_ef(min(max(index.ef, k) * 8, max(index.get_current_count(), k)))
    blocks, candidates = [], None
    for start in range(0, len(vectors), _FALLBACK_BLOCK):
        part = vectors[start : start + _FALLBACK_BLOCK]
        try:
            found, distances = index.knn_query(part, k=k, filter=filter)
            blocks.append((found, similarities(distances)))
        except RuntimeError:
            if not fallback:
                nothing = np.full((len(part), k), NOT_FOUND, dtype=np.uint64)
                blocks.append((nothing, np.full((len(part), k), -np.inf, dtype=np.float32)))
                continue
            if candidates is None:
                live = [i for i in live_labels(index) if filter is None or filter(i)]
                candidates = unit_items(index, live)
            blocks.append(exact_knn(candidates, part, k))
    width = min(found.shape[1] for found, _ in blocks)  # fewer if the filter passes fewer
    labels = np.concatenate([found[:, :width] for found, _ in blocks])
    return labels, np.concatenate([scores[:, :width] for _, scores in blocks])


_FALLBACK_BLOCK = 256
NOT_FOUND = 2**64 - 1  # a label no item has (labels count up from 0)


def unit_items(index: hnswlib.Index, labels) -> tuple[np.ndarray, np.ndarray]:
    """``labels`` (live items of ``index``) and their vectors, of unit length."""
    import numpy as np

    labels = np.asarray(labels, dtype=np.uint64)
    if not len(labels):
        return labels, np.zeros((0, index.dim), dtype=np.float32)
    return labels, _unit(index.get_items(labels, return_type="numpy"))


def _exact_in_blocks(candidates, vectors: np.ndarray, k: int):
    """``exact_knn`` for many queries, a block at a time (its score matrix stays small)."""
    import numpy as np

    blocks = [
        exact_knn(candidates, vectors[start : start + _FALLBACK_BLOCK], k)
        for start in range(0, len(vectors), _FALLBACK_BLOCK)
    ]
    return np.concatenate([b[0] for b in blocks]), np.concatenate([b[1] for b in blocks])


def exact_knn(candidates: tuple[np.ndarray, np.ndarray], vectors: np.ndarray, k: int):
    """``knn`` by brute force over ``candidates`` (from ``unit_items``): labels and cosine
    similarities of the ``k`` best, best first. Holds a queries x candidates matrix of
    scores: pass a few hundred queries at a time over large candidate sets."""
    import numpy as np

    labels, matrix = candidates
    k = min(k, len(labels))
    if k == 0:
        return np.zeros((len(vectors), 0), np.uint64), np.zeros((len(vectors), 0), np.float32)
    scores = _unit(np.asarray(vectors, np.float32)) @ matrix.T  # as hnswlib's cosine space
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    top_scores = np.take_along_axis(scores, top, axis=1)
    order = np.argsort(-top_scores, axis=1, kind="stable")
    return labels[np.take_along_axis(top, order, axis=1)], np.take_along_axis(
        top_scores, order, axis=1
    )


# Up to this many live items, searches are exact: greedy HNSW search can be trapped among
# many identical vectors (boilerplate, repeated chunks) and return k wrong items, which no
# fallback notices. Reading the vectors from the graph file (graph_items) and one matrix
# product cost milliseconds at this size (bench/exact_vs_hnsw.py).
EXACT_SEARCH_LIMIT = 20_000
_HNSW_HEADER_BYTES = 96  # hnswlib's saveIndex header, before the level-0 data


def graph_items(path: Path, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels and unit vectors of the live items of the hnswlib graph file at ``path``.

    Read straight from the file, because hnswlib's get_items copies item by item (0.7 s for
    20,000 items). The layout is hnswlib's save format: a header of size_t fields, then per
    item its level-0 links (whose third byte holds the deleted mark), its vector and its
    label. tests/test_store.py checks the result against get_items.
    """
    import numpy as np

    header = np.fromfile(path, dtype="<u8", count=6)  # offsetLevel0 ... offsetData
    if len(header) < 6:
        raise IndexCorrupt(f"{path} is truncated; run `bienc index --rebuild`")
    _, _, count, size, label_offset, data_offset = (int(v) for v in header)
    if size != data_offset + 4 * dim + 8 or label_offset != data_offset + 4 * dim:
        raise IndexCorrupt(f"{path} does not hold {dim}-d vectors; run `bienc index --rebuild`")
    if count == 0:
        return np.zeros(0, np.uint64), np.zeros((0, dim), np.float32)
    try:
        data = np.memmap(path, np.uint8, mode="r", offset=_HNSW_HEADER_BYTES, shape=(count, size))
    except ValueError as exc:
        raise IndexCorrupt(f"{path} is truncated; run `bienc index --rebuild`") from exc
    live = (data[:, 2] & 1) == 0  # hnswlib's DELETE_MARK
    rows = data[live]
    vectors = rows[:, data_offset:label_offset].copy().view(np.float32)
    labels = rows[:, label_offset:size].copy().view(np.uint64).ravel()
    return labels, _unit(vectors)


def _unit(rows: np.ndarray) -> np.ndarray:
    import numpy as np

    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-30)


def live_labels(index: hnswlib.Index, block: int = 4096) -> list[int]:
    """Labels of the items not marked deleted (hnswlib only says so by refusing them)."""
    found: list[int] = []
    ids = sorted(index.get_ids_list())
    for start in range(0, len(ids), block):
        part = ids[start : start + block]
        try:
            index.get_items(part, return_type="numpy")
            found.extend(part)
        except RuntimeError:
            found.extend(i for i in part if _is_live(index, i))
    return found


def _is_live(index: hnswlib.Index, label: int) -> bool:
    try:
        index.get_items([label], return_type="numpy")
    except RuntimeError:
        return False
    return True


@contextlib.contextmanager
def write_lock(root: Path, *, wait: float | None) -> Iterator[None]:
    """Hold the index's writer lock. ``wait``: None = as long as it takes, 0 = not at all.

    Refuses (``check_index_folder``) a folder that is neither new, empty nor a bienc index,
    before creating anything. When the body fails, what this call created (the folder, its
    parents, the lock) is removed again while nothing else has been put there.
    """
    check_index_folder(root)
    created = _missing_folders(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
        had_lock = (root / LOCK).exists()
        fd = _acquire(root, wait)
    except BaseException as exc:
        _remove_if_empty(created)
        if isinstance(exc, OSError):
            raise _storage_error(root, exc) from exc
        raise
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    except BaseException:
        if not had_lock and _names(root) == {LOCK}:  # a failed first run leaves nothing
            with contextlib.suppress(OSError):
                (root / LOCK).unlink()
            _remove_if_empty(created)
        raise
    finally:
        os.close(fd)  # closing the descriptor releases the flock


def _acquire(root: Path, wait: float | None) -> int:
    """The lock file's descriptor, flocked. A failed first run removes its lock file: a
    process that was waiting on it then holds a lock nobody else sees, so it checks that
    the file it locked is still the one at the path, and starts again if not."""
    deadline = None if wait is None else time.monotonic() + wait
    while True:
        fd = os.open(root / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if deadline is not None and time.monotonic() >= deadline:
                        holder = _lock_holder(fd)
                        raise IndexLocked(
                            f"index at {root} is being written by another bienc process"
                            f"{holder}; try again later or pass --wait SECONDS"
                        ) from None
                    time.sleep(0.1)
            with contextlib.suppress(FileNotFoundError):
                if os.stat(root / LOCK).st_ino == os.fstat(fd).st_ino:
                    return fd
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)


def check_index_folder(root: Path) -> None:
    """Refuse to write an index into a folder that holds anything but a bienc index.

    A writer only ever removes what it can prove is its own, but a user's folder given as
    ``--index`` (``bienc index . --index .``) must not even receive a lock file. Accepted: a
    path that does not exist yet, an empty folder, a bienc index (``is_bienc_index``), and
    what a first run killed before it published leaves behind (``_first_run_leftovers``).
    Raises UsageError, having touched nothing.
    """
    try:
        names = set(os.listdir(root))
    except FileNotFoundError:
        return
    except NotADirectoryError:
        raise UsageError(f"--index {root} is a file, not a folder: give a folder") from None
    except OSError as exc:
        raise _storage_error(root, exc) from exc
    if names and not is_bienc_index(str(root), names) and not _first_run_leftovers(root, names):
        raise UsageError(
            f"--index {root} is not empty and not a bienc index; bienc writes an index only "
            "into a new or empty folder or an existing index: give another --index"
        )


def is_bienc_index(directory: str, names: set[str] | None = None) -> bool:
    """Whether ``directory`` holds a bienc index: its CURRENT names a generation whose
    manifest carries the format marker, or (CURRENT lost) some generation's manifest does.
    ``names``: the directory's entries, when the caller has listed it already."""
    try:
        with open(os.path.join(directory, CURRENT), "rb") as fh:
            current = fh.read(64).decode("ascii", "replace").strip()
    except OSError:
        current = ""
    if _GENERATION.fullmatch(current) and _has_index_manifest(Path(directory, current)):
        return True
    if names is None:
        try:
            names = set(os.listdir(directory))
        except OSError:
            return False
    generations = sorted((n for n in names if _GENERATION.fullmatch(n)), key=_number)
    return any(_has_index_manifest(Path(directory, n)) for n in generations[-3:])


def _has_index_manifest(generation: Path) -> bool:
    try:
        with open(generation / MANIFEST, "rb") as fh:
            manifest = json.load(fh)
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and manifest.get("format") == FORMAT


def _first_run_leftovers(root: Path, names: set[str]) -> bool:
    """Whether ``names`` are what a first run killed before publishing leaves: its lock
    (holding a pid, as write_lock writes it), temporary generation folders, the embedding
    cache of what it encoded, the ONNX export it made; or an export copied in ahead of the
    first run. Either the lock or an export (``models/*/bienc_onnx.json``) must be there."""
    if not all(
        name == LOCK
        or _is_temporary(root / name)
        or (name in (CACHE, MODELS) and _is_folder(root / name))
        for name in names
    ):
        return False
    return _is_own_lock(root / LOCK) or any((root / MODELS).glob("*/bienc_onnx.json"))


def _is_own_lock(path: Path) -> bool:
    if not path.is_file() or path.is_symlink():
        return False
    try:
        with open(path, "rb") as fh:
            return _LOCK_TEXT.fullmatch(fh.read(32)) is not None
    except OSError:
        return False


def _is_temporary(path: Path) -> bool:
    """A writer's temporary file or folder, left by a run killed midway."""
    if _TMP_GENERATION.fullmatch(path.name):
        return _is_folder(path)
    return path.name == _TMP_CURRENT and path.is_file() and not path.is_symlink()


def _is_folder(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink()


def _names(folder: Path) -> set[str] | None:
    try:
        return set(os.listdir(folder))
    except OSError:
        return None


def _missing_folders(root: Path) -> list[Path]:
    """``root`` and those of its parents that do not exist yet, innermost first."""
    missing = []
    current = root.absolute()
    while not os.path.lexists(current) and current.parent != current:
        missing.append(current)
        current = current.parent
    return missing


def _remove_if_empty(folders: list[Path]) -> None:
    for folder in folders:  # innermost first; stops at the first that is not empty
        try:
            folder.rmdir()
        except OSError:
            return


def _lock_holder(fd: int) -> str:
    try:
        pid = os.pread(fd, 32, 0).decode().strip()
    except OSError:
        return ""
    return f" (pid {pid})" if pid.isdigit() else ""


def write_generation(
    root: Path, hnsw: hnswlib.Index, sidecar: pa.Table, manifest: dict[str, Any]
) -> Path:
    """Write a complete new generation and make it the live one. Call under ``write_lock``.

    Everything is written into a temporary folder, fsynced, renamed to its final name, and
    only then published by replacing CURRENT; a failure at any step leaves the previous
    generation live and removes the partial one.
    """
    import pyarrow.parquet as pq

    sidecar = with_vector_labels(sidecar)
    live = _current_name(root)  # kept for readers that opened it
    number = _next_generation_number(root)
    final = root / f"g{number:06d}"
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-g{number:06d}-", dir=root))
    try:
        hnsw.save_index(str(tmp / VECTORS))
        pq.write_table(sidecar, tmp / SIDECAR, compression="zstd", row_group_size=8192)
        _write_lookup(tmp / LOOKUP, sidecar)
        files = _checksums(tmp, (VECTORS, SIDECAR, LOOKUP))
        manifest = dict(manifest, generation=number, files=files)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        for name in (VECTORS, SIDECAR, LOOKUP, MANIFEST):
            _fsync_file(tmp / name)
        _fsync_dir(tmp)
        os.rename(tmp, final)
        publish(root, final.name)
    except (OSError, sqlite3.Error) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if _current_name(root) != final.name:  # renamed but never published
            shutil.rmtree(final, ignore_errors=True)
        raise _storage_error(root, exc) from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    # Not simply the newest older folder: a run killed between its rename and publish
    # leaves a complete generation that was never live.
    _remove_old_generations(root, keep={final.name, live} if live else {final.name})
    return final


def _write_lookup(path: Path, sidecar: pa.Table) -> None:
    names = [*LOOKUP_COLUMNS, "vector_label"]  # vector_label: a query's way to all chunks of a hit
    columns = ", ".join(names)
    marks = ", ".join("?" * len(names))
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("PRAGMA journal_mode = OFF")  # a fresh file in a private folder: no journal
        db.execute(
            f"CREATE TABLE chunks ({columns.replace('label', 'label INTEGER PRIMARY KEY', 1)})"
        )
        for batch in sidecar.select(names).to_batches(max_chunksize=8192):
            data = batch.to_pydict()
            db.executemany(f"INSERT INTO chunks VALUES ({marks})", zip(*data.values()))
        db.execute("CREATE INDEX chunks_vector_label ON chunks (vector_label)")
        db.commit()


def publish(root: Path, name: str) -> None:
    tmp = root / _TMP_CURRENT
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(name + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, root / CURRENT)  # atomic: readers see the old name or the new one
    _fsync_dir(root)


def _current_name(root: Path) -> str | None:
    try:
        return (root / CURRENT).read_text(encoding="utf-8").strip()
    except OSError:
        return None


def _number(name: str) -> int:
    return int(name[1:])


def _generations(root: Path) -> list[str]:
    """Entries named like generations, oldest first: numbering goes past all of them."""
    return sorted((n for n in os.listdir(root) if _GENERATION.fullmatch(n)), key=_number)


def generation_dirs(root: Path) -> list[Path]:
    """The generation folders of the index at ``root`` (named so, holding a manifest),
    newest first."""
    names = reversed(_generations(root)) if root.is_dir() else ()
    return [root / n for n in names if _is_folder(root / n) and _has_index_manifest(root / n)]


def _next_generation_number(root: Path) -> int:
    names = _generations(root)
    return _number(names[-1]) + 1 if names else 1


def _remove_old_generations(root: Path, keep: set[str]) -> None:
    """Remove superseded generations and leftovers of interrupted writes (best effort).

    Only what a writer provably made: folders named like a generation that hold a bienc
    manifest, and the writer's temporary names; anything else in the folder stays.
    """
    for path in generation_dirs(root):
        if path.name not in keep:
            shutil.rmtree(path, ignore_errors=True)
    for path in root.iterdir():
        if _is_temporary(path):
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


def _checksums(folder: Path, names: Sequence[str]) -> dict[str, dict[str, Any]]:
    out = {}
    for name in names:
        digest = hashlib.sha256()
        with open(folder / name, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        out[name] = {"bytes": (folder / name).stat().st_size, "sha256": digest.hexdigest()}
    return out


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _storage_error(root: Path, exc: OSError | sqlite3.Error) -> StorageError:
    if isinstance(exc, sqlite3.Error):
        full = "full" in str(exc)
        exc = OSError(errno.ENOSPC if full else errno.EIO, str(exc))
    reasons = {
        errno.ENOSPC: "the disk is full",
        errno.EDQUOT: "the disk quota is exceeded",
        errno.EROFS: "the file system is read-only",
        errno.EACCES: "permission denied",
        errno.EPERM: "permission denied",
    }
    reason = reasons.get(exc.errno or 0, exc.strerror or str(exc))
    return StorageError(
        f"cannot write the index at {root}: {reason}; the previous index is unchanged"
    )


class EmbeddingCache:
    """Vectors encoded by a run that has not published yet, keyed by chunk hash, per model.

    `bienc index` appends a shard after every block it encodes; a run killed five hours in
    leaves those shards behind, and the next run reuses them instead of encoding again. A
    run that publishes (or finds nothing to publish) clears the cache: its vectors are then
    in the generation itself. Shards are written to a temporary name and renamed, so a
    partial shard is never read; an unreadable one is ignored.
    """

    def __init__(self, root: Path, fingerprint: str):
        self.dir = root / CACHE / fingerprint

    def load(self) -> dict[str, np.ndarray]:
        import numpy as np

        vectors: dict[str, np.ndarray] = {}
        for shard in sorted(self.dir.glob("*.npz")) if self.dir.is_dir() else ():
            try:
                with np.load(shard, allow_pickle=False) as data:
                    vectors.update(zip(data["keys"].tolist(), data["vectors"]))
            except Exception:  # a damaged shard only costs its vectors
                continue
        return vectors

    def append(self, keys: Sequence[str], vectors: np.ndarray) -> None:
        import numpy as np

        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".shard-", suffix=".tmp", dir=self.dir)
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, keys=np.array(keys, dtype=str), vectors=vectors)
            os.replace(tmp, self.dir / f"{time.time_ns()}-{os.getpid()}.npz")
        except OSError as exc:
            raise _storage_error(self.dir.parent.parent, exc) from exc

    def clear(self) -> None:
        shutil.rmtree(self.dir.parent, ignore_errors=True)


def disk_usage(root: Path) -> int:
    """Bytes used by the live and kept generations."""
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def chunk_vectors(generation: Generation) -> tuple[np.ndarray, np.ndarray]:
    """Every live chunk's label and stored vector (unit length), read back from the graph.

    For exact (brute-force) search, e.g. to measure what the approximate graph misses.
    """
    import numpy as np

    table = generation.read_sidecar(columns=("label", "vector_label"))
    labels = table["label"].to_numpy().astype(np.uint64)
    return labels, row_vectors(generation, table["vector_label"].to_numpy())
