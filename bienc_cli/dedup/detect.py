"""`bienc dedup`, detection: exact and near-duplicate documents, grouped around one keeper each.

How two documents are compared
    Every document has one vector, the token-weighted mean of its chunk vectors, re-normalised
    (``store.document_vectors``); their *similarity* is the cosine of those vectors. Two
    documents with the same extracted text (the sidecar's ``doc_hash``) are exact duplicates,
    similarity 1. Two others are near-duplicates when their similarity is at least the
    threshold and, when either has more than one chunk, so is the similarity of their two
    closest chunks (the *passage* check). A mean of several chunks drifts towards the topic of
    the whole text: two BBC stories about one politician (he quits a party; he launches
    another) have means 0.91 alike but closest passages only 0.85, whereas a reworded,
    reformatted or truncated copy keeps a passage close to its original. On the planted folder of bench/dedup_planted.py the
    check removes 8 of 10 false pairs at 0.88 and loses 3 of 156 true ones. File documents and
    table rows are compared only among themselves: a row is never a duplicate of a file.

Where candidate pairs come from
    An HNSW graph over one vector per distinct text: each is searched for its ``neighbours``
    nearest. A row whose farthest neighbour is still above the threshold is searched again
    with four times as many, so a large cluster of near copies is never cut off at k. Work is
    about n log n; no step compares all pairs.

How groups are formed (no chaining)
    Documents are taken in keep order: reference documents first, then the ``--keep`` policy,
    then source order. The first document not yet in a group becomes a keeper, and every
    document not yet in a group whose similarity *to that keeper* is at or above the threshold
    joins its group. Each member is therefore checked against its keeper directly: A close to
    B and B close to C puts A and C in B's group only if B is the keeper and both are close to
    it; if A is the keeper, C stays out unless it is close to A itself. Reference documents
    are never members, only keepers.

Functions here take arrays and records, never a model: they run on synthetic vectors in tests.
The rest of dedup: ``corpus`` loads the documents, ``stale`` re-checks the disk, ``calibrate``
shows the similarities, ``run`` puts them together, ``records`` and ``tables`` are its output.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bienc_cli.errors import UsageError
from bienc_cli.store.graph import build, knn

log = logging.getLogger(__name__)

KEEP_POLICIES = ("first", "oldest", "newest", "longest", "shortest", "shortest-path")
# Chosen from data: the lowest threshold at which precision on the planted folder of
# bench/dedup_planted.py reaches 0.98 (0.86: 0.969, 0.88: 0.987, recall 0.911). See the README.
DEFAULT_THRESHOLD = 0.88
DEFAULT_NEIGHBOURS = 8
# The dedup graph is built once and searched once, so it is built with less breadth than the
# stored index (ef_construction 200): near-duplicates are each other's nearest neighbours by
# far. Measured (bench/dedup_scale.py, clustered synthetic vectors): 40 finds 98.5-98.8% of
# the planted pairs at 100,000 documents in ~27 CPU-seconds; 64 finds 99.96% in ~45.
_GRAPH_M = 16
_GRAPH_EF_CONSTRUCTION = 40
_GRAPH_EF = 32
_DETERMINISTIC_UP_TO = 10_000

# The chunk vectors of one document (by its index in the records), as unit rows.
ChunkLookup = Callable[[int], "np.ndarray"]


@dataclass(frozen=True)
class DocRecord:
    """What dedup knows about a document besides its vector."""

    doc_id: str  # as the index stores it (valid UTF-8, see documents.stored_path)
    path: str  # the file's real path (documents.real_path)
    kind: str = "text"
    row_id: str | None = None
    doc_hash: str = ""  # hash of the extracted text; equal hashes are exact duplicates
    size: int = 0  # bytes of the source file
    mtime_ns: int = 0  # the source file's modification time when it was indexed
    length: int = 0  # characters of extracted text
    n_chunks: int = 1
    order: int = 0  # position in source order: the order sources were given, then path, row
    reference: bool = False  # under a --reference folder: never a member, preferred as keeper
    snippet: str = ""  # the start of the text, for reports

    @property
    def is_row(self) -> bool:
        return self.kind == "table"


@dataclass(frozen=True)
class Pair:
    """Two documents at or above the threshold; ``a`` < ``b`` (indexes into the records)."""

    a: int
    b: int
    similarity: float
    match: str  # "exact" (same text) | "near"
    passage: float | None = None  # similarity of the closest chunks, when either has several


@dataclass(frozen=True)
class Member:
    index: int
    similarity: float  # to the keeper
    match: str  # "exact" | "near"


@dataclass
class Group:
    keeper: int
    members: list[Member]


@dataclass(frozen=True)
class DedupOptions:
    threshold: float = DEFAULT_THRESHOLD
    keep: str = "first"
    reference: tuple[str, ...] = ()  # absolute folder (or file) paths
    neighbours: int = DEFAULT_NEIGHBOURS

    def __post_init__(self) -> None:
        if not -1.0 <= self.threshold <= 1.0:
            raise UsageError(f"--threshold {self.threshold} is not a cosine similarity (-1 to 1)")
        if self.keep not in KEEP_POLICIES:
            raise UsageError(
                f"unknown --keep {self.keep!r}; choose one of {', '.join(KEEP_POLICIES)}"
            )
        if self.neighbours < 1:
            raise UsageError("--neighbours must be at least 1")


@dataclass
class Detection:
    """Everything dedup found: the groups, and the pairs they were formed from."""

    records: list[DocRecord]
    groups: list[Group]
    pairs: list[Pair]
    options: DedupOptions
    seconds: float = 0.0
    # (record index, why) of documents whose file no longer holds what was compared: in no
    # group and no pair (see ``stale.drop_stale``)
    stale: list[tuple[int, str]] = field(default_factory=list)

    @property
    def duplicates(self) -> int:
        return sum(len(g.members) for g in self.groups)


# -- candidates ------------------------------------------------------------------------------


def near_pairs(
    vectors: np.ndarray, threshold: float, *, neighbours: int = DEFAULT_NEIGHBOURS
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Index pairs (i < j) whose cosine is at least ``threshold``, from an HNSW neighbour graph.

    ``vectors`` are unit rows. Returns arrays (i, j, similarity); the similarity is the exact
    dot product of the two rows, so it is symmetric and matches what `--calibrate` shows.
    """
    n = len(vectors)
    empty = np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    if n < 2:
        return empty
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    graph = neighbour_graph(vectors)
    found_i: list[np.ndarray] = []
    found_j: list[np.ndarray] = []
    rows = np.arange(n)
    k = min(neighbours + 1, n)  # + 1: a row finds itself
    while rows.size:
        labels, sims = knn(graph, vectors[rows], k, live=n)
        labels = labels.astype(np.int64)
        hit = (sims >= threshold) & (labels != rows[:, None])
        found_i.append(np.repeat(rows, hit.sum(axis=1)))
        found_j.append(labels[hit])
        if k >= n:
            break
        # A row whose k-th neighbour is still close enough may have more: ask again, wider.
        rows = rows[sims[:, -1] >= threshold]
        k = min(4 * k, n)
    i = np.concatenate(found_i)
    j = np.concatenate(found_j)
    low, high = np.minimum(i, j), np.maximum(i, j)
    keys = np.unique(low * n + high)
    low, high = keys // n, keys % n
    similarity = np.einsum("ij,ij->i", vectors[low], vectors[high])
    keep = similarity >= threshold  # the graph's float32 distance may round the other way
    return low[keep], high[keep], similarity[keep]


def neighbour_graph(vectors: np.ndarray):
    """An HNSW graph over ``vectors``, labelled by row number."""
    # Inserting from several threads makes the graph depend on timing. Up to a few thousand
    # documents one thread costs under a second and makes every run give the same groups.
    threads = 1 if len(vectors) <= _DETERMINISTIC_UP_TO else -1
    return build(
        vectors,
        np.arange(len(vectors)),
        M=_GRAPH_M,
        ef_construction=_GRAPH_EF_CONSTRUCTION,
        ef=_GRAPH_EF,
        num_threads=threads,
    )


def exact_classes(hashes: Sequence[str]) -> np.ndarray:
    """A class number per document: documents with the same text hash share one."""
    numbers: dict[str, int] = {}
    return np.array([numbers.setdefault(h, len(numbers)) for h in hashes], dtype=np.int64)


def closest_chunks(a: np.ndarray, b: np.ndarray) -> float:
    """The similarity of the two closest chunks of two documents (rows: unit chunk vectors)."""
    return float((a @ b.T).max())


def find_pairs(
    vectors: np.ndarray,
    records: Sequence[DocRecord],
    options: DedupOptions,
    *,
    chunks: ChunkLookup | None = None,
) -> list[Pair]:
    """Every pair of documents that dedup calls duplicates.

    Exact copies are paired with the first copy of their text (not all n² ways); distinct
    texts are paired when they pass the similarity threshold and, with ``chunks``, the
    passage check. Pairs never mix a table row and a file.
    """
    classes = exact_classes([r.doc_hash or r.doc_id for r in records])
    first_of_class: dict[int, int] = {}
    pairs: list[Pair] = []
    for index, cls in enumerate(classes.tolist()):
        first = first_of_class.setdefault(cls, index)
        if first != index and records[first].is_row == records[index].is_row:
            pairs.append(Pair(first, index, 1.0, "exact"))
    representatives = np.array(sorted(first_of_class.values()), dtype=np.int64)
    i, j, sims = near_pairs(
        vectors[representatives], options.threshold, neighbours=options.neighbours
    )
    for a, b, similarity in zip(
        representatives[i].tolist(), representatives[j].tolist(), sims.tolist()
    ):
        if records[a].is_row != records[b].is_row:
            continue
        passage = None
        if chunks is not None and max(records[a].n_chunks, records[b].n_chunks) > 1:
            # A document of one chunk: its chunk vector is its document vector.
            passage = closest_chunks(
                chunks(a) if records[a].n_chunks > 1 else vectors[a][None],
                chunks(b) if records[b].n_chunks > 1 else vectors[b][None],
            )
            if passage < options.threshold:
                continue
        pairs.append(Pair(a, b, min(float(similarity), 1.0), "near", passage))
    return pairs


# -- groups ----------------------------------------------------------------------------------


def keep_order(records: Sequence[DocRecord], keep: str) -> list[int]:
    """Record indexes, best keeper first: reference documents, then the policy, then order."""
    policies: dict[str, Callable[[DocRecord], Any]] = {
        "first": lambda r: 0,
        "oldest": lambda r: r.mtime_ns,
        "newest": lambda r: -r.mtime_ns,
        "longest": lambda r: -r.length,
        "shortest": lambda r: r.length,
        "shortest-path": lambda r: len(r.path),
    }
    policy = policies[keep]
    return sorted(
        range(len(records)),
        key=lambda i: (not records[i].reference, policy(records[i]), records[i].order, i),
    )


def form_groups(
    records: Sequence[DocRecord],
    pairs: Sequence[Pair],
    keep: str,
    *,
    excluded: Collection[int] = (),
) -> list[Group]:
    """Groups around keepers (see the module docstring); each member is close to its keeper.

    Exact copies of a text share its near pairs: a pair found between two texts holds for
    every copy of each. ``excluded`` documents are neither keepers nor members.
    """
    classes = exact_classes([r.doc_hash or r.doc_id for r in records])
    copies: dict[int, list[int]] = defaultdict(list)  # class -> documents, in keep order
    order = keep_order(records, keep)
    for index in order:
        copies[int(classes[index])].append(index)
    near: dict[int, list[tuple[float, int]]] = defaultdict(list)  # class -> (sim, other class)
    for pair in pairs:
        if pair.match == "near":
            ca, cb = int(classes[pair.a]), int(classes[pair.b])
            near[ca].append((pair.similarity, cb))
            near[cb].append((pair.similarity, ca))
    taken = [False] * len(records)
    for index in excluded:
        taken[index] = True
    groups = []
    for keeper in order:
        if taken[keeper]:
            continue
        taken[keeper] = True
        members: list[Member] = []
        kind = records[keeper].is_row
        own = int(classes[keeper])
        candidates = [(1.0, own, "exact")] + [
            (sim, other, "near") for sim, other in sorted(near[own], key=lambda s: (-s[0], s[1]))
        ]
        for similarity, cls, match in candidates:
            for index in copies[cls]:
                record = records[index]
                if taken[index] or record.reference or record.is_row != kind:
                    continue
                taken[index] = True
                members.append(Member(index, round(similarity, 6), match))
        if members:
            groups.append(Group(keeper, members))
    return groups


def detect(
    vectors: np.ndarray,
    records: Sequence[DocRecord],
    options: DedupOptions,
    *,
    chunks: ChunkLookup | None = None,
) -> Detection:
    """Pairs and groups for documents with these (unit) vectors: the whole detection step."""
    started = time.perf_counter()
    if len(vectors) != len(records):
        raise ValueError("one vector per record")
    pairs = find_pairs(vectors, records, options, chunks=chunks)
    groups = form_groups(records, pairs, options.keep)
    seconds = time.perf_counter() - started
    log.debug(
        "%d documents, %d pairs, %d groups in %.2fs", len(records), len(pairs), len(groups), seconds
    )
    return Detection(list(records), groups, pairs, options, seconds)
