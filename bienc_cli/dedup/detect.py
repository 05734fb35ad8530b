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
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import shutil
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bienc_cli.errors import UsageError
from bienc_cli.inputs.documents import real_path
from bienc_cli.store import generations as store
from bienc_cli.store.graph import knn, new_hnsw
from bienc_cli.store.layout import index_path

if TYPE_CHECKING:
    from bienc_cli.indexing.request import EncoderFactory, ProgressFn, RunReport

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
    # group and no pair (see ``drop_stale``)
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
    graph = _graph(vectors)
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


def _graph(vectors: np.ndarray):
    """An HNSW graph over ``vectors``, labelled by row number."""
    graph = new_hnsw(
        vectors.shape[1], len(vectors), M=_GRAPH_M, ef_construction=_GRAPH_EF_CONSTRUCTION
    )
    # Inserting from several threads makes the graph depend on timing. Up to a few thousand
    # documents one thread costs under a second and makes every run give the same groups.
    threads = 1 if len(vectors) <= _DETERMINISTIC_UP_TO else -1
    graph.add_items(vectors, np.arange(len(vectors)), num_threads=threads)
    graph.set_ef(_GRAPH_EF)
    return graph


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


# -- what the disk still supports ------------------------------------------------------------


def drop_stale(
    detection: Detection, *, text_columns: Sequence[str] = (), id_column: str | None = None
) -> Detection:
    """The detection without the documents whose file no longer holds what was compared.

    The vectors are the index's: a file changed or removed since it was indexed may not be
    a duplicate of anything now, and reporting it as one would have ``-f ids | xargs rm``
    lose unique text. Every document of a pair is checked: size and mtime as indexed, else
    its text read again and hashed as indexing does (a file only touched is still in). The
    others are left out, named in ``stale``, and the groups formed again without them (a
    stale keeper's copies may still duplicate each other). ``text_columns`` and ``id_column``
    read table rows as the index did.
    """
    records = detection.records
    involved = sorted({i for p in detection.pairs for i in (p.a, p.b)})
    cache: dict[str, dict[str | None, str]] = {}
    table_options = (tuple(text_columns), id_column)
    stale = {}
    for index in involved:
        problem = _disk_problem(records[index], cache, table_options)
        if problem:
            stale[index] = problem
    if not stale:
        return detection
    pairs = _pairs_without(records, detection.pairs, stale)
    groups = form_groups(records, pairs, detection.options.keep, excluded=stale)
    log.debug("%d documents changed on disk since they were indexed", len(stale))
    return dataclasses.replace(detection, groups=groups, pairs=pairs, stale=sorted(stale.items()))


def _disk_problem(
    record: DocRecord,
    cache: dict[str, dict[str | None, str]],
    table_options: tuple[tuple[str, ...], str | None],
) -> str:
    """Why ``record``'s file no longer holds its text ("" when it does)."""
    try:
        st = os.stat(record.path)
    except FileNotFoundError:
        return "is gone since it was indexed"
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    if (st.st_size, st.st_mtime_ns) == (record.size, record.mtime_ns):
        return ""
    if record.path not in cache:
        cache[record.path] = _text_hashes(record.path, st, table_options)
    if cache[record.path].get(record.row_id) != record.doc_hash:
        return "changed since it was indexed"
    return ""


def _text_hashes(
    path: str, st: os.stat_result, table_options: tuple[tuple[str, ...], str | None]
) -> dict[str | None, str]:
    """The text hash of each document in the file now (by row id; None for a file)."""
    from bienc_cli.indexing.plan import text_hash
    from bienc_cli.inputs.documents import Document, FileEntry
    from bienc_cli.inputs.readers import TableOptions, read_file

    entry = FileEntry(path, st.st_size, st.st_mtime_ns, root=path)
    text_columns, id_column = table_options
    options = TableOptions(text_columns=text_columns, id_column=id_column)
    return {
        event.row_id: text_hash(event.text)
        for event in read_file(entry, options)
        if isinstance(event, Document)
    }


def _pairs_without(
    records: Sequence[DocRecord], pairs: Sequence[Pair], stale: Collection[int]
) -> list[Pair]:
    """``pairs`` with stale documents replaced by the first fresh copy of their text (what
    was compared still holds for it), or dropped when their text has none."""
    classes = exact_classes([r.doc_hash or r.doc_id for r in records]).tolist()
    fresh: dict[int, int] = {}
    for index, cls in enumerate(classes):
        if index not in stale:
            fresh.setdefault(cls, index)
    out: dict[tuple[int, int], Pair] = {}
    for pair in pairs:
        a = fresh.get(classes[pair.a]) if pair.a in stale else pair.a
        b = (
            pair.b
            if pair.b not in stale
            else (None if pair.match == "exact" else fresh.get(classes[pair.b]))
        )
        if a is None or b is None or a == b:
            continue
        a, b = min(a, b), max(a, b)
        out.setdefault((a, b), dataclasses.replace(pair, a=a, b=b))
    return list(out.values())


# -- calibration -----------------------------------------------------------------------------


@dataclass
class Calibration:
    """Nearest-neighbour similarities, and example pairs around a few thresholds."""

    records: list[DocRecord]
    nearest: np.ndarray  # per distinct text: the similarity of its nearest other text
    bins: list[tuple[float, float, int]]  # (low, high, count) of ``nearest``
    examples: list[dict[str, Any]]  # per threshold: the pairs just above and just below
    thresholds: list[float]
    exact_copies: int


def calibrate(
    vectors: np.ndarray,
    records: Sequence[DocRecord],
    *,
    thresholds: Sequence[float] = (0.8, 0.85, 0.9, 0.95),
    bin_width: float = 0.05,
) -> Calibration:
    """The distribution of nearest-neighbour similarities, and pairs near each threshold.

    Each distinct text's nearest other text is found through the same kind of graph as
    detection uses; exact copies are counted apart. For each threshold, the example "just
    above" is the least similar nearest pair at or above it, "just below" the most similar
    one under it.
    """
    classes = exact_classes([r.doc_hash or r.doc_id for r in records])
    _, first = np.unique(classes, return_index=True)
    first = np.sort(first)
    nearest = np.zeros(0, dtype=np.float32)
    partner = np.zeros(0, dtype=np.int64)
    if len(first) >= 2:
        distinct = np.ascontiguousarray(vectors[first], dtype=np.float32)
        labels, _ = knn(_graph(distinct), distinct, 2, live=len(distinct))
        labels = labels.astype(np.int64)
        itself = labels[:, 0] == np.arange(len(distinct))
        partner = np.where(itself, labels[:, 1], labels[:, 0])
        nearest = np.minimum(np.einsum("ij,ij->i", distinct, distinct[partner]), 1.0)
    bins = []
    if nearest.size:
        low = np.floor(nearest.min() / bin_width) * bin_width
        edges = np.append(np.arange(low, 1.0 - bin_width / 2, bin_width), 1.0)
        counts, _ = np.histogram(nearest, bins=edges)  # the last bin includes 1.0
        bins = [(float(edges[k]), float(edges[k + 1]), int(c)) for k, c in enumerate(counts)]
    order = np.argsort(nearest, kind="stable").tolist()
    examples = []
    for threshold in thresholds:
        above = [k for k in order if nearest[k] >= threshold][:1]
        below = [k for k in order if nearest[k] < threshold][-1:]
        entry: dict[str, Any] = {"threshold": threshold, "above": None, "below": None}
        for side, picked in (("above", above), ("below", below)):
            for k in picked:
                a, b = sorted((int(first[k]), int(first[partner[k]])))
                entry[side] = {"a": a, "b": b, "similarity": float(nearest[k])}
        entry["share_above"] = float((nearest >= threshold).mean()) if nearest.size else 0.0
        examples.append(entry)
    exact_copies = len(records) - len(first)
    return Calibration(list(records), nearest, bins, examples, list(thresholds), exact_copies)


# -- loading documents -----------------------------------------------------------------------


@dataclass
class Corpus:
    """Documents to deduplicate: records, their vectors, and where they came from."""

    records: list[DocRecord]
    vectors: np.ndarray
    roots: list[str]  # the folders, files or patterns the documents were taken from
    id_column: str | None = None
    text_columns: tuple[str, ...] = ()  # as the index read tables (empty: found per table)
    chunks: ChunkLookup | None = None
    index_report: RunReport | None = None  # when the sources were indexed for this run
    model: str = ""


@dataclass
class DedupRequest:
    """What `bienc dedup` was asked to look at: SOURCE arguments, or an existing index."""

    sources: Sequence[str] = ()
    stdin_paths: Sequence[str] = ()
    index: Path | None = None  # used when no sources are given
    model: str | None = None
    index_options: dict[str, Any] = field(default_factory=dict)  # as for IndexRequest.options
    batch_size: int = 32


@contextlib.contextmanager
def open_corpus(
    request: DedupRequest,
    *,
    reference: Sequence[str] = (),
    encoder_factory: EncoderFactory | None = None,
    progress: ProgressFn | None = None,
) -> Iterator[Corpus]:
    """The documents to deduplicate, with their vectors.

    With sources, they are indexed into a temporary index (removed on exit), and so are the
    reference folders not under a source: their files are compared too, never acted on. The
    roots (where actions may happen) are the sources alone. Without sources, the vectors
    stored in ``request.index`` are used and no model is loaded.
    """
    from bienc_cli.indexing.request import IndexRequest, IndexSettings
    from bienc_cli.indexing.run import run_index

    reference = [_absolute(r) for r in reference]
    for folder in reference:
        if not os.path.exists(folder):
            raise UsageError(f"--reference {folder}: no such file or folder")
    if not request.sources and not request.stdin_paths:
        if request.model or request.index_options:
            raise UsageError(
                "--model and the input options apply to SOURCE arguments; an index keeps "
                "its own (re-index it with `bienc index` to change them)"
            )
        generation = store.open_index(request.index or index_path(None))
        yield _corpus(generation, generation.manifest["sources"]["roots"], reference)
        return
    roots = [_absolute(s) for s in request.sources] + [_absolute(p) for p in request.stdin_paths]
    extra = [r for r in reference if not any(_under(r, root) for root in roots)]
    tmp = Path(tempfile.mkdtemp(prefix="bienc-dedup-"))
    try:
        report = run_index(
            IndexRequest(
                root=tmp / "index",
                sources=[*request.sources, *extra],
                stdin_paths=list(request.stdin_paths),
                model=request.model,
                options=request.index_options,
                settings=IndexSettings(batch_size=request.batch_size),
            ),
            encoder_factory=encoder_factory,
            progress=progress,
        )
        corpus = _corpus(store.open_index(tmp / "index"), roots, reference)
        corpus.index_report = report
        yield corpus
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _absolute(path: str) -> str:
    return os.path.abspath(os.path.expanduser(path))


def _corpus(generation: store.Generation, roots: Sequence[str], reference: Sequence[str]) -> Corpus:
    columns = ["path", "row_id", "kind", "doc_hash", "size", "mtime_ns", "n_chunks", "text"]
    docs = store.document_vectors(generation, columns=columns)
    extent = generation.read_sidecar(columns=["doc_id", "label", "char_end"])
    extent = extent.group_by("doc_id").aggregate([("label", "min"), ("char_end", "max")])
    length = dict(zip(extent["doc_id"].to_pylist(), extent["char_end_max"].to_pylist()))
    first_label = dict(zip(extent["doc_id"].to_pylist(), extent["label_min"].to_pylist()))
    table = docs.table
    data = {name: table[name].to_pylist() for name in columns}
    data["path"] = [real_path(path) for path in data["path"]]
    root_rank = _root_ranker(roots)
    keys = []
    for k, doc_id in enumerate(docs.doc_ids):
        keys.append((root_rank(data["path"][k]), data["path"][k], first_label[doc_id]))
    order = {k: rank for rank, k in enumerate(sorted(range(len(keys)), key=keys.__getitem__))}
    records = [
        DocRecord(
            doc_id=doc_id,
            path=data["path"][k],
            kind=data["kind"][k],
            row_id=data["row_id"][k],
            doc_hash=data["doc_hash"][k],
            size=data["size"][k],
            mtime_ns=data["mtime_ns"][k],
            length=int(length[doc_id]),
            n_chunks=data["n_chunks"][k],
            order=order[k],
            reference=_under_any(data["path"][k], reference),
            snippet=_snippet(data["text"][k]),
        )
        for k, doc_id in enumerate(docs.doc_ids)
    ]
    options = generation.manifest["sources"].get("options", {})
    multi = [k for k, r in enumerate(records) if r.n_chunks > 1]
    chunks = _chunk_lookup(generation, docs.doc_ids, multi) if multi else None
    return Corpus(
        records=records,
        vectors=docs.vectors,
        roots=list(roots),
        id_column=options.get("id_column"),
        text_columns=tuple(options.get("text_columns") or ()),
        chunks=chunks,
        model=generation.manifest["model"]["name"],
    )


def _chunk_lookup(
    generation: store.Generation, doc_ids: list[str], wanted: list[int]
) -> ChunkLookup:
    """Chunk vectors of the documents with several chunks, read once, on first use."""
    cache: dict[int, np.ndarray] = {}

    def load() -> None:
        import pyarrow as pa
        import pyarrow.compute as pc

        ids = [doc_ids[k] for k in wanted]
        table = generation.read_sidecar(columns=["vector_label", "doc_id"])
        table = table.filter(pc.is_in(table["doc_id"], pa.array(ids, pa.string())))
        vectors = store.row_vectors(generation, table["vector_label"].to_numpy())
        position = {doc_id: k for k, doc_id in zip(wanted, ids)}
        rows: dict[int, list[int]] = defaultdict(list)
        for row, doc_id in enumerate(table["doc_id"].to_pylist()):
            rows[position[doc_id]].append(row)
        for k, selected in rows.items():
            cache[k] = np.ascontiguousarray(vectors[selected], dtype=np.float32)

    def lookup(k: int) -> np.ndarray:
        if not cache:
            load()
        return cache[k]

    return lookup


def _root_ranker(roots: Sequence[str]) -> Callable[[str], int]:
    """The position of the first root that holds ``path`` (sources are ranked as given)."""
    import fnmatch
    import glob

    def rank(path: str) -> int:
        for position, root in enumerate(roots):
            if glob.has_magic(root):
                if fnmatch.fnmatch(path, root) or fnmatch.fnmatch(path, os.path.join(root, "*")):
                    return position
            elif _under(path, root):
                return position
        return len(roots)

    return rank


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _under_any(path: str, roots: Sequence[str]) -> bool:
    return any(_under(path, root) for root in roots)


def _snippet(text: str | None, width: int = 200) -> str:
    flat = " ".join((text or "").split())
    return flat if len(flat) <= width else flat[: width - 1].rstrip() + "…"


@dataclass
class DedupRun:
    """The outcome of `bienc dedup` before any file is touched."""

    corpus: Corpus
    detection: Detection | None = None
    calibration: Calibration | None = None


def run_dedup(
    request: DedupRequest,
    options: DedupOptions,
    *,
    calibrate_only: bool = False,
    encoder_factory: EncoderFactory | None = None,
    progress: ProgressFn | None = None,
) -> DedupRun:
    """Load (or index) the documents, then detect their duplicates or calibrate."""
    with open_corpus(
        request, reference=options.reference, encoder_factory=encoder_factory, progress=progress
    ) as corpus:
        if calibrate_only:
            thresholds = sorted({0.8, 0.85, 0.9, 0.95, DEFAULT_THRESHOLD, options.threshold})
            calibration = calibrate(corpus.vectors, corpus.records, thresholds=thresholds)
            return DedupRun(corpus, calibration=calibration)
        detection = detect(corpus.vectors, corpus.records, options, chunks=corpus.chunks)
        corpus.chunks = None  # its files are gone once the temporary index is removed
    # The vectors may be older than the files (a stale --index): report only what holds now.
    detection = drop_stale(detection, text_columns=corpus.text_columns, id_column=corpus.id_column)
    return DedupRun(corpus, detection)


# -- records for output ----------------------------------------------------------------------


def _doc_record(record: DocRecord) -> dict[str, Any]:
    return {
        "doc_id": record.doc_id,
        "path": record.path,
        "row_id": record.row_id,
        "kind": record.kind,
        "reference": record.reference,
        "snippet": record.snippet,
    }


def group_records(detection: Detection) -> list[dict[str, Any]]:
    """The groups as plain data: keeper, then members with their similarity to the keeper."""
    records = detection.records
    return [
        {
            "group": number,
            "keeper": _doc_record(records[group.keeper]),
            "members": [
                _doc_record(records[m.index])
                | {"similarity": round(m.similarity, 4), "match": m.match}
                for m in group.members
            ],
        }
        for number, group in enumerate(detection.groups, 1)
    ]


def stale_records(detection: Detection) -> list[dict[str, Any]]:
    """The documents left out because their file changed since it was indexed, and why."""
    records = detection.records
    return [
        {
            "doc_id": records[i].doc_id,
            "path": records[i].path,
            "row_id": records[i].row_id,
            "reason": reason,
        }
        for i, reason in detection.stale
    ]


def pair_records(detection: Detection) -> list[dict[str, Any]]:
    """Every duplicate pair, most similar first: doc ids, similarity, match, passage."""
    records = detection.records
    pairs = sorted(detection.pairs, key=lambda p: (-p.similarity, p.a, p.b))
    return [
        {
            "similarity": round(p.similarity, 4),
            "match": p.match,
            "passage": None if p.passage is None else round(p.passage, 4),
            "a": records[p.a].doc_id,
            "b": records[p.b].doc_id,
        }
        for p in pairs
    ]


def calibration_record(calibration: Calibration) -> dict[str, Any]:
    records = calibration.records

    def pair(side: dict[str, Any] | None) -> dict[str, Any] | None:
        if side is None:
            return None
        return {
            "similarity": round(side["similarity"], 4),
            "a": _doc_record(records[side["a"]]),
            "b": _doc_record(records[side["b"]]),
        }

    valid = calibration.nearest
    return {
        "documents": len(records),
        "exact_copies": calibration.exact_copies,
        "histogram": [
            {"low": round(lo, 2), "high": round(hi, 2), "count": c}
            for lo, hi, c in calibration.bins
        ],
        "quantiles": {f"p{q}": round(float(np.percentile(valid, q)), 4) for q in (50, 90, 99)}
        if valid.size
        else {},
        "thresholds": [
            {
                "threshold": e["threshold"],
                "documents_above": int((valid >= e["threshold"]).sum()),
                "share_above": round(e["share_above"], 4),
                "above": pair(e["above"]),
                "below": pair(e["below"]),
            }
            for e in calibration.examples
        ],
    }


def summary(detection: Detection) -> dict[str, Any]:
    """The figures of the one-line report, and notes on what may surprise."""
    exact = sum(m.match == "exact" for g in detection.groups for m in g.members)
    notes = [
        f"no compared document is under --reference {folder}"
        for folder in detection.options.reference
        if not any(_under(r.path, folder) for r in detection.records)
    ]
    return {
        "notes": notes,
        "documents": len(detection.records),
        "groups": len(detection.groups),
        "duplicates": detection.duplicates,
        "exact": exact,
        "threshold": detection.options.threshold,
        "keep": detection.options.keep,
        "seconds": detection.seconds,
    }


# -- deduplicated tables ---------------------------------------------------------------------

OUTPUT_SUFFIXES = (".parquet", ".jsonl", ".ndjson", ".csv")


@dataclass
class TableOutput:
    path: str  # the rows that are kept
    removed_path: str  # the rows that were removed, with why
    kept: int
    removed: int
    tables: list[str]  # the source tables read


def removed_path_for(path: Path) -> Path:
    """``out.parquet`` -> ``out.removed.parquet``."""
    return path.with_name(f"{path.stem}.removed{path.suffix}")


def check_output_path(path: Path) -> None:
    """Refuse an --output file name of no known table format, before any work is done."""
    if Path(path).suffix.lower() not in OUTPUT_SUFFIXES:
        raise UsageError(f"--output {path}: use a .parquet, .jsonl or .csv file name")


def write_table_output(corpus: Corpus, detection: Detection, path: Path) -> TableOutput:
    """Write the source table(s) without their duplicate rows, and the removed rows aside.

    Rows are read again from the source files, so every column keeps its values. Removed rows
    carry ``dedup_group``, ``dedup_duplicate_of`` (the kept row's id), ``dedup_similarity``
    and ``dedup_match``. With several tables, a ``source`` column says where a row came from.
    """
    path = Path(path)
    check_output_path(path)
    records = detection.records
    tables = list(dict.fromkeys(r.path for r in sorted(records, key=lambda r: r.order) if r.is_row))
    written = {os.path.realpath(path), os.path.realpath(removed_path_for(path))}
    if written & {os.path.realpath(t) for t in tables}:
        raise UsageError(f"--output {path} would overwrite a source table; choose another file")
    if not tables:
        raise UsageError(
            "--output writes deduplicated tables, but no table rows were compared "
            "(give a .parquet, .jsonl or .csv source)"
        )
    why: dict[tuple[str, str], dict[str, Any]] = {}
    for number, group in enumerate(detection.groups, 1):
        keeper = records[group.keeper]
        for m in group.members:
            member = records[m.index]
            if member.is_row:
                why[(member.path, str(member.row_id))] = {
                    "dedup_group": number,
                    "dedup_duplicate_of": keeper.row_id
                    if keeper.path == member.path
                    else keeper.doc_id,
                    "dedup_similarity": round(m.similarity, 4),
                    "dedup_match": m.match,
                }
    kept_rows: list[dict[str, Any]] = []
    removed_rows: list[dict[str, Any]] = []
    schemas = []
    for table in tables:
        rows, schema = _read_rows(table, corpus.id_column)
        schemas.append(schema)
        for row_id, row in rows:
            if len(tables) > 1:
                row = {"source": table} | row
            reason = why.get((table, row_id))
            if reason is None:
                kept_rows.append(row)
            else:
                removed_rows.append(row | reason)
    schema = schemas[0] if len(tables) == 1 else None
    removed_path = removed_path_for(path)
    _write_rows(kept_rows, path, schema)
    _write_rows(removed_rows, removed_path, None)
    return TableOutput(str(path), str(removed_path), len(kept_rows), len(removed_rows), tables)


def _read_rows(path: str, id_column: str | None) -> tuple[list[tuple[str, dict[str, Any]]], Any]:
    """(row id, row) of every row of a table, numbered exactly as `bienc index` numbers them."""
    # tables.py gives the same row numbers and ids as indexing did.
    from bienc_cli.inputs import tables as tables

    out: list[tuple[str, dict[str, Any]]] = []
    schema = None
    try:
        with open(path, "rb") as f:
            if os.path.splitext(path)[1].lower() == ".parquet":
                import pyarrow.parquet as pq

                schema = pq.ParquetFile(f).schema_arrow
                f.seek(0)
            out = list(tables.table_rows(f, path, id_column))
    except (OSError, tables.TableProblem) as exc:
        raise UsageError(f"cannot read {path} again to write --output: {exc}") from exc
    return out, schema


def _write_rows(rows: list[dict[str, Any]], path: Path, schema: Any) -> None:
    """Write rows as Parquet, JSON Lines or CSV (by suffix), through a temporary file."""
    suffix = path.suffix.lower()
    # a name of its own: never a file of the user's that happens to be called .out.csv.tmp
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:12]}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        names = list(dict.fromkeys(k for row in rows for k in row))
        if suffix in (".jsonl", ".ndjson"):
            with open(tmp, "x", encoding="utf-8") as fh:
                for row in rows:
                    fh.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
        elif suffix == ".csv":
            import csv

            with open(tmp, "x", encoding="utf-8", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=names)
                writer.writeheader()
                writer.writerows(rows)
        else:
            import pyarrow.parquet as pq

            pq.write_table(_arrow_table(rows, names, schema), tmp)
        os.replace(tmp, path)
    except OSError as exc:
        from bienc_cli.errors import StorageError

        with contextlib.suppress(OSError):
            tmp.unlink()
        raise StorageError(f"cannot write {path}: {exc.strerror}") from exc


def _arrow_table(rows: list[dict[str, Any]], names: list[str], schema: Any) -> Any:
    """Rows as an Arrow table: the source's schema when there is one, else inferred per column
    (a column whose values do not share a type is written as text)."""
    import pyarrow as pa

    if schema is not None:
        with contextlib.suppress(pa.ArrowException):
            return pa.Table.from_pylist(rows, schema=schema)
    columns = {}
    for name in names:
        values = [row.get(name) for row in rows]
        try:
            columns[name] = pa.array(values)
        except (pa.ArrowException, TypeError, ValueError):
            columns[name] = pa.array(
                [None if v is None else json.dumps(v, default=str) for v in values], pa.string()
            )
    return pa.table(columns) if columns else pa.table({})
