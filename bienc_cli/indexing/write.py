"""Build the next generation from the plan and the new vectors, through store's API."""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

from bienc_cli.encoding.model import ModelInfo
from bienc_cli.indexing.encode import Row, reusable
from bienc_cli.indexing.model_choice import query_backend
from bienc_cli.indexing.plan import Plan, Previous, jsonable, skipped_files
from bienc_cli.indexing.request import IndexRequest, RunReport
from bienc_cli.inputs.documents import Document, stored_path
from bienc_cli.store import generations as store
from bienc_cli.store import graph, sidecar
from bienc_cli.store.manifest import build_manifest

if TYPE_CHECKING:
    import numpy as np


def write_run(
    request: IndexRequest,
    model: ModelInfo,
    roots: list[str],
    options: dict[str, Any],
    previous: Previous | None,
    plan: Plan,
    removed_ids: set[str],
    new_rows: list[Row],
    vectors: np.ndarray | None,
    skipped_rows: dict[str, list[dict[str, Any]]],
    report: RunReport,
) -> None:
    settings = request.settings
    old_manifest = previous.generation.manifest if previous else None
    next_label = old_manifest["counts"]["next_label"] if old_manifest else 0
    kept = previous.table if previous else sidecar.empty()
    removed_items: set[int] = set()  # the graph items of the chunks removed
    if previous and removed_ids:
        stored_ids = {previous.stored_id[d] for d in removed_ids}
        kept, removed_items = sidecar.drop_documents(kept, stored_ids)
    if plan.restat:
        assert previous is not None  # only documents of the previous generation are restat
        kept = sidecar.restat(kept, {previous.stored_id[d]: st for d, st in plan.restat.items()})
    if request.rebuild:  # a new graph: labels start again, after those of the rows it keeps
        next_label = max(sidecar.column(kept, "label"), default=-1) + 1
    new_labels = list(range(next_label, next_label + len(new_rows)))
    new_items = _vector_labels(new_rows, new_labels, vectors, reusable(previous, request))
    table = sidecar.append(kept, rows_columns(new_rows, new_labels, new_items))

    items = set(sidecar.column(table, "vector_label"))
    dead = removed_items - items  # graph items no chunk holds any more
    old_deleted = old_manifest["counts"]["deleted"] if old_manifest else 0
    deleted = old_deleted + len(dead)
    live = len(table)
    # A rebuild starts a new graph; it holds the old vectors only of what could not be read.
    compact = request.rebuild or (
        deleted > 0 and deleted > settings.compact_ratio * (len(items) + deleted)
    )
    if compact or previous is None:
        hnsw, table = _new_graph(previous, table, new_items, vectors, model, settings)
        deleted = 0
    else:
        hnsw = _patched_graph(previous, dead, new_labels, new_items, vectors, settings)
    documents = len(set(sidecar.column(table, "doc_id")))
    manifest = build_manifest(
        old_manifest,
        model=model,
        backend=query_backend(model),
        overlap=settings.overlap,
        hnsw=graph.manifest_params(
            hnsw, M=settings.M, ef_construction=settings.ef_construction, ef=settings.ef
        ),
        counts={
            "documents": documents,
            "chunks": live,
            "vectors": len(set(sidecar.column(table, "vector_label"))),  # live graph items
            "deleted": deleted,
            "next_label": next_label + len(new_rows),
        },
        sources={"roots": roots, "options": jsonable(options)},
        skipped_files=skipped_files(report),
        skipped_rows=skipped_rows,
        last_run={
            "added": report.added,
            "updated": report.updated,
            "removed": report.removed,
            "unchanged": report.unchanged,
            "skipped": len(report.skipped),
            "errors": len(report.errors),
        },
    )
    generation = store.write_generation(request.root, hnsw, table, manifest)
    report.generation = int(generation.name[1:])
    report.documents = documents
    report.chunks = live
    report.compacted = compact


def _vector_labels(
    rows: list[Row], labels: list[int], vectors: np.ndarray | None, reuse: dict[str, int]
) -> list[int]:
    """The graph item each new chunk's vector goes to, so that identical vectors share one.

    A chunk whose text the previous generation holds keeps that text's item; one whose
    vector is byte-identical to another's in this run (a repeated line, a copied file) goes
    to the first one's; any other gets an item of its own, at its own label.
    """
    if not rows:
        return []
    assert vectors is not None
    keys = [_vector_key(v) for v in vectors]
    known: dict[bytes, int] = {}
    for row, key in zip(rows, keys):
        if row.chunk_hash in reuse:
            known.setdefault(key, reuse[row.chunk_hash])
    return [
        reuse[row.chunk_hash] if row.chunk_hash in reuse else known.setdefault(key, label)
        for row, label, key in zip(rows, labels, keys)
    ]


def _vector_key(vector: np.ndarray) -> bytes:
    return hashlib.blake2b(vector.tobytes(), digest_size=16).digest()


def _patched_graph(previous, dead, new_labels, new_items, vectors, settings):
    """The previous graph, its unused items marked deleted and the new vectors added."""
    fresh = [i for i, (label, item) in enumerate(zip(new_labels, new_items)) if label == item]
    capacity = previous_elements(previous) + len(fresh)
    hnsw = previous.generation.load_hnsw(capacity=capacity)
    added = vectors[fresh] if fresh else None
    return graph.patched(hnsw, dead, added, [new_labels[i] for i in fresh], ef=settings.ef)


def _new_graph(previous, table, new_items, vectors, model, settings):
    """A compact graph of the items ``table`` uses, and ``table`` with identical vectors
    merged into one item (the lowest label): also those an older index kept apart."""
    import numpy as np

    items = sorted(set(sidecar.column(table, "vector_label")))
    position = {item: i for i, item in enumerate(items)}
    matrix = np.zeros((len(items), model.dim), np.float32)
    have = np.zeros(len(items), bool)
    for i, item in enumerate(new_items):  # new chunks' vectors, also those reused
        matrix[position[item]], have[position[item]] = vectors[i], True
    old = [item for item, found in zip(items, have) if not found]
    if old:  # kept chunks: their vectors from the previous graph
        matrix[~have] = store.row_vectors(previous.generation, old)
    merged: dict[bytes, int] = {}
    same = {item: merged.setdefault(_vector_key(v), item) for item, v in zip(items, matrix)}
    distinct = [i for i, item in enumerate(items) if same[item] == item]
    hnsw = graph.build(
        matrix[distinct],
        [items[i] for i in distinct],
        M=settings.M,
        ef_construction=settings.ef_construction,
        ef=settings.ef,
    )
    return hnsw, sidecar.relabel_vectors(table, same)


def previous_elements(previous: Previous) -> int:
    return int(previous.generation.manifest["hnsw"]["elements"])


def rows_columns(
    rows: list[Row], labels: list[int], vector_labels: list[int]
) -> dict[str, list[Any]]:
    """The sidecar columns of the new chunks, as plain lists (see ``sidecar.append``)."""
    columns: dict[str, list[Any]] = {name: [] for name in sidecar.sidecar_schema().names}
    for label, vector_label, row in zip(labels, vector_labels, rows):
        doc, chunk = row.doc, row.chunk
        columns["label"].append(label)
        columns["vector_label"].append(vector_label)
        columns["doc_id"].append(_stored_doc_id(doc))
        columns["path"].append(stored_path(doc.path))
        columns["row_id"].append(None if doc.row_id is None else _clean(doc.row_id))
        columns["kind"].append(doc.kind)
        columns["chunk"].append(chunk.index)
        columns["n_chunks"].append(row.n_chunks)
        columns["char_start"].append(chunk.char_start)
        columns["char_end"].append(chunk.char_end)
        columns["line_start"].append(chunk.line_start)
        columns["line_end"].append(chunk.line_end)
        columns["n_tokens"].append(chunk.n_tokens)
        columns["doc_hash"].append(row.doc_hash)
        columns["chunk_hash"].append(row.chunk_hash)
        columns["size"].append(doc.size)
        columns["mtime_ns"].append(doc.mtime_ns)
        columns["encoding"].append(doc.encoding)
        columns["text"].append(_clean(chunk.text))
        columns["meta"].append(
            _clean(json.dumps(doc.meta, ensure_ascii=False, default=str)) if doc.meta else None
        )
    return columns


def _stored_doc_id(doc: Document) -> str:
    """The doc_id column's value: the stored path, then the row part (``#row_id``) cleaned."""
    if doc.doc_id.startswith(doc.path):
        return stored_path(doc.path) + _clean(doc.doc_id[len(doc.path) :])
    return _clean(doc.doc_id)


def _clean(text: str) -> str:
    """Parquet strings must be valid UTF-8: replace lone surrogates (e.g. from JSON escapes)."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
