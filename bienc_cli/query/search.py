"""`bienc query`: encode the query, search the graph, and return documents (or chunks).

Scores are cosine similarities between the query's vector and a chunk's vector, in [-1, 1];
a document's score is its best chunk's.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bienc_cli.encoding.encoder import BACKENDS, Encoder, load_encoder
from bienc_cli.encoding.model import ModelInfo, resolve_model
from bienc_cli.encoding.onnx_folder import is_onnx_export
from bienc_cli.errors import ModelUnavailable, UsageError
from bienc_cli.inputs.documents import real_path
from bienc_cli.store import generations as store
from bienc_cli.store import graph, layout, sidecar

if TYPE_CHECKING:
    import numpy as np

EncoderFactory = Callable[[ModelInfo], Encoder]


@dataclass(frozen=True)
class QueryOptions:
    k: int = 10
    chunks: bool = False  # one hit per chunk instead of one per document
    min_score: float | None = None
    path_globs: tuple[str, ...] = ()  # keep hits whose path matches any of these
    where: tuple[tuple[str, str], ...] = ()  # table metadata COLUMN=VALUE, all must match
    ef: int | None = None  # search breadth; default: the index's stored ef
    backend: str | None = None  # default: what the index recorded (onnx where it exported)


@dataclass
class Hit:
    query: str
    rank: int  # 1-based, per query
    score: float  # cosine similarity
    doc_id: str
    path: str
    row_id: str | None
    kind: str
    chunk: int
    n_chunks: int
    char_start: int
    char_end: int
    line_start: int
    line_end: int
    text: str
    meta: dict[str, Any] = field(default_factory=dict)


def search(
    index_root,
    queries: Sequence[str],
    options: QueryOptions,
    *,
    encoder_factory: EncoderFactory | None = None,
) -> list[list[Hit]]:
    """Hits for each query, best first. Opens the index, encodes the queries, searches."""
    generation = store.open_index(index_root)
    if options.k < 1:
        raise UsageError("-k must be at least 1")
    if options.min_score is not None and not -1.0 <= options.min_score <= 1.0:  # NaN too
        raise UsageError(f"--min-score {options.min_score} is not a cosine similarity (-1 to 1)")
    live = generation.live_count
    if live == 0 or not queries:
        return [[] for _ in queries]
    allowed = _allowed_labels(generation, options)
    model = index_model(generation, backend=options.backend, queries=len(queries))
    encoder = (encoder_factory or load_encoder)(model)
    vectors = encoder.encode(list(queries))
    items = generation.vector_count if allowed is None else len(allowed)
    if items <= graph.EXACT_SEARCH_LIMIT:
        candidates = _exact(generation, vectors, allowed, options)
    else:
        candidates = _approximate(generation, vectors, allowed, options)
    rows = _rows(generation, {label for found in candidates for label, _ in found})
    results = []
    for text, found in zip(queries, candidates):
        hits = [_hit(text, rows[label], score) for label, score in found]
        if not options.chunks:
            hits = _best_chunk_per_document(hits)
        if options.min_score is not None:
            hits = [h for h in hits if h.score >= options.min_score]
        hits = hits[: options.k]
        for rank, hit in enumerate(hits, 1):
            hit.rank = rank
        results.append(hits)
    return results


def index_model(
    generation: store.Generation, *, backend: str | None = None, queries: int = 1
) -> ModelInfo:
    """The model the index was built with, on the backend queries should use.

    With an ONNX export (the default where the model exports), nothing touches the model
    folder and torch is never imported; one or a few queries run on one thread, which
    starts faster than a pool.
    """
    stored = generation.manifest["model"]
    model = ModelInfo.from_manifest(stored)
    chosen = backend or stored.get("backend", "sentence-transformers")
    if chosen not in BACKENDS:
        raise UsageError(f"unknown --backend {chosen!r}; choose one of {', '.join(BACKENDS)}")
    folder = layout.onnx_dir(generation.root, stored["fingerprint"], chosen)
    if chosen in ("onnx", "onnx-int8", "auto") and is_onnx_export(folder):
        threads = 1 if queries <= 4 else None
        fast = "onnx" if chosen == "auto" else chosen
        return dataclasses.replace(model, backend=fast, onnx_dir=str(folder), threads=threads)
    if chosen == "onnx-int8":
        raise ModelUnavailable(
            f"index at {generation.root} has no int8 export of its model; "
            "run `bienc index --rebuild --backend onnx-int8` to make one"
        )
    if chosen == "onnx":
        raise ModelUnavailable(
            f"index at {generation.root} has no ONNX export of its model; "
            "run `bienc index --backend onnx` to make one"
        )
    if not os.path.isdir(stored["path"]):
        found = resolve_model(stored["name"])
        if found.dim != stored["dim"]:
            raise ModelUnavailable(
                f"model {stored['name']} now gives {found.dim}-d vectors but the index holds "
                f"{stored['dim']}-d ones; rebuild it with `bienc index --rebuild`"
            )
        model = dataclasses.replace(model, path=found.path)
    return dataclasses.replace(model, backend="sentence-transformers")


def _fetch_size(generation: store.Generation, options: QueryOptions, live: int) -> int:
    """Graph items to fetch so that, after grouping by document, ``k`` documents remain
    (each item stands for at least one chunk)."""
    if options.chunks and options.min_score is None:
        return min(options.k, live)
    return min(live, max(4 * options.k, 50))


def _approximate(generation, vectors, allowed, options) -> list[list[tuple[int, float]]]:
    live = generation.vector_count if allowed is None else len(allowed)
    fetch = _fetch_size(generation, options, live)
    index = generation.load_hnsw()
    ef = max(options.ef or generation.manifest["hnsw"]["ef"], fetch)
    filter_fn = (lambda label: label in allowed) if allowed is not None else None
    while True:
        labels, scores = graph.knn(index, vectors, fetch, live=live, filter=filter_fn, ef=ef)
        found = _chunks(generation, labels, scores, allowed)
        if (
            options.chunks
            or fetch >= live
            or all(_enough_documents(generation, f, options) for f in found)
        ):
            return found
        fetch = min(live, fetch * 4)  # many chunks of few documents: look further
        ef = None  # knn widens the breadth it has (maybe widened already) to ``fetch``


def _enough_documents(generation, found, options) -> bool:
    rows = _rows(generation, {label for label, _ in found}, columns=("label", "doc_id"))
    return len({rows[label]["doc_id"] for label, _ in found}) >= options.k


def _exact(
    generation, vectors: np.ndarray, allowed: dict[int, list[int]] | None, options
) -> list[list[tuple[int, float]]]:
    """Every allowed vector (all without a filter) by brute force: complete, and at most
    EXACT_SEARCH_LIMIT of them, as fast as the graph (see graph.EXACT_SEARCH_LIMIT)."""
    import numpy as np

    labels, matrix = generation.items()
    if allowed is not None:
        keep = np.isin(labels, np.fromiter(allowed, np.uint64, len(allowed)))
        labels, matrix = labels[keep], matrix[keep]
    fetch = _fetch_size(generation, options, len(labels))
    if not options.chunks:
        fetch = len(labels)  # every chunk, ranked: grouping by document cannot run short
    found, scores = graph.exact_knn((labels, matrix), vectors, fetch)
    return _chunks(generation, found, scores, allowed)


def _chunks(generation, items, scores, allowed) -> list[list[tuple[int, float]]]:
    """Per query, each graph item found as the chunks whose vector it is (identical chunks
    share one item), each with the item's score, in label order; with a filter only the
    chunks it lets through."""
    if allowed is None:
        allowed = generation.members(sorted({int(i) for row in items for i in row}))
    return [
        [
            (label, float(score))
            for item, score in zip(row, row_scores)
            for label in allowed.get(int(item), ())
        ]
        for row, row_scores in zip(items, scores)
    ]


def _allowed_labels(
    generation: store.Generation, options: QueryOptions
) -> dict[int, list[int]] | None:
    """The chunks that pass --path and --where, by graph item (see ``_chunks``), or None
    when there is no filter."""
    if not options.path_globs and not options.where:
        return None
    allowed: dict[int, list[int]] = {}
    cwd = os.getcwd()
    columns = ("label", "vector_label", "path", "meta")
    for label, item, path, meta in generation.scan_lookup(columns):
        if options.path_globs and not _path_matches(real_path(path), options.path_globs, cwd):
            continue
        if options.where and not _meta_matches(meta, options.where):
            continue
        allowed.setdefault(item, []).append(label)
    return allowed


def _path_matches(path: str, globs: Sequence[str], cwd: str) -> bool:
    relative = os.path.relpath(path, cwd)
    candidates = (path, relative, os.path.basename(path))
    return any(fnmatch.fnmatch(c, g) for g in globs for c in candidates)


def _meta_matches(meta: str | None, where: Sequence[tuple[str, str]]) -> bool:
    values = json.loads(meta) if meta else {}
    return all(column in values and _as_text(values[column]) == value for column, value in where)


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def parse_where(expressions: Sequence[str]) -> tuple[tuple[str, str], ...]:
    parsed = []
    for expression in expressions:
        column, sep, value = expression.partition("=")
        if not sep or not column.strip():
            raise UsageError(f"--where expects COLUMN=VALUE, got {expression!r}")
        parsed.append((column.strip(), value))
    return tuple(parsed)


def _rows(
    generation, labels: set[int], columns: Sequence[str] = sidecar.LOOKUP_COLUMNS
) -> dict[int, dict]:
    return generation.lookup(sorted(labels), columns) if labels else {}


def _hit(query: str, row: dict[str, Any], score: float) -> Hit:
    return Hit(
        query=query,
        rank=0,
        score=score,
        doc_id=row["doc_id"],
        path=real_path(row["path"]),
        row_id=row["row_id"],
        kind=row["kind"],
        chunk=row["chunk"],
        n_chunks=row["n_chunks"],
        char_start=row["char_start"],
        char_end=row["char_end"],
        line_start=row["line_start"],
        line_end=row["line_end"],
        text=row["text"],
        meta=json.loads(row["meta"]) if row["meta"] else {},
    )


def _best_chunk_per_document(hits: list[Hit]) -> list[Hit]:
    best: dict[str, Hit] = {}
    for hit in hits:  # hits arrive best first
        best.setdefault(hit.doc_id, hit)
    return list(best.values())
