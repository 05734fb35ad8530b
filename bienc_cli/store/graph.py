"""The HNSW graph (vectors.hnsw): the only module that imports hnswlib.

hnswlib's cosine distance (1 - cos) is turned into a similarity here and nowhere else.
Besides the approximate search, exact (brute-force) search over the same items, for small
indexes and for the queries a graph trapped among identical vectors cannot answer.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bienc_cli.errors import IndexCorrupt

if TYPE_CHECKING:
    import hnswlib
    import numpy as np

    Graph = hnswlib.Index  # for other modules' annotations: they never import hnswlib


def load(
    path: Path, params: dict[str, Any], dim: int, *, capacity: int | None = None
) -> hnswlib.Index:
    """The graph at ``path`` with the manifest's ``params``, ``ef`` restored (hnswlib does
    not persist it); room for ``capacity`` items when more than it holds."""
    import hnswlib

    index = hnswlib.Index(space=params["space"], dim=dim)
    try:
        index.load_index(str(path), max_elements=max(capacity or 0, params["max_elements"]))
    except (RuntimeError, OSError) as exc:
        raise IndexCorrupt(f"cannot load {path}: {exc}; run `bienc index --rebuild`") from exc
    index.set_ef(int(params["ef"]))
    return index


def item_vectors(index: hnswlib.Index, vector_labels: Sequence[int]) -> np.ndarray:
    """The stored vectors of these graph items (at least one), one row per label, in order:
    each item is read once however many labels repeat it."""
    import numpy as np

    items, rows = np.unique(np.asarray(vector_labels, np.uint64), return_inverse=True)
    vectors = index.get_items(items, return_type="numpy")
    return np.ascontiguousarray(vectors[rows], dtype=np.float32)


def similarities(distances: np.ndarray) -> np.ndarray:
    """hnswlib's cosine distance is 1 - cos; bienc reports cosine similarity."""
    return 1.0 - distances


def new_hnsw(dim: int, capacity: int, *, M: int, ef_construction: int) -> hnswlib.Index:
    import hnswlib

    index = hnswlib.Index(space="cosine", dim=dim)
    index.init_index(max_elements=max(capacity, 1), ef_construction=ef_construction, M=M)
    return index


def build(
    vectors: np.ndarray,
    labels: Sequence[int],
    *,
    M: int,
    ef_construction: int,
    ef: int,
    num_threads: int = -1,
) -> hnswlib.Index:
    """A graph of ``vectors`` at ``labels``, searched with breadth ``ef``."""
    index = new_hnsw(vectors.shape[1], len(labels), M=M, ef_construction=ef_construction)
    if len(labels):
        index.add_items(vectors, labels, num_threads=num_threads)
    index.set_ef(ef)
    return index


def patched(
    index: hnswlib.Index,
    dead: Iterable[int],
    vectors: np.ndarray | None,
    labels: Sequence[int],
    *,
    ef: int,
) -> hnswlib.Index:
    """``index`` with the ``dead`` items marked deleted and ``vectors`` added at ``labels``
    (it must have room for them: see ``load``'s capacity), searched with breadth ``ef``."""
    for item in sorted(dead):
        index.mark_deleted(item)
    if len(labels):
        index.add_items(vectors, labels)
    index.set_ef(ef)
    return index


def manifest_params(
    index: hnswlib.Index, *, M: int, ef_construction: int, ef: int
) -> dict[str, Any]:
    """The manifest's record of ``index``: what ``load`` needs and hnswlib's file does not
    hold (space, ef), and its sizes."""
    return {
        "space": "cosine",
        "M": M,
        "ef_construction": ef_construction,
        "ef": ef,
        "max_elements": index.get_max_elements(),
        "elements": index.element_count,
    }


def item_ids(index: hnswlib.Index) -> list[int]:
    """The labels of every item of ``index``, those marked deleted included."""
    return index.get_ids_list()


def knn(
    index: hnswlib.Index,
    vectors: np.ndarray,
    k: int,
    *,
    live: int,
    filter=None,
    fallback=True,
    ef: int | None = None,
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
    ``ef`` sets the search breadth first (it stays set on ``index``); it is never below ``k``.
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
    if ef is not None:
        index.set_ef(ef)
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
