"""Build the next generation from the plan and the new vectors, through store's API."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bienc_cli import __version__
from bienc_cli.encoding.model import ModelInfo
from bienc_cli.indexing.encode import Row, reusable
from bienc_cli.indexing.model_choice import query_backend
from bienc_cli.indexing.plan import Plan, Previous, jsonable, skipped_files
from bienc_cli.indexing.request import IndexRequest, RunReport
from bienc_cli.inputs.documents import Document, stored_path
from bienc_cli.store import generations as store
from bienc_cli.store import graph, layout, sidecar

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa


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
    import pyarrow as pa
    import pyarrow.compute as pc

    settings = request.settings
    old_manifest = previous.generation.manifest if previous else None
    next_label = old_manifest["counts"]["next_label"] if old_manifest else 0
    kept = previous.table if previous else sidecar.sidecar_schema().empty_table()
    removed_items: set[int] = set()  # the graph items of the chunks removed
    if previous and removed_ids:
        stored_ids = sorted(previous.stored_id[d] for d in removed_ids)
        drop = pc.is_in(kept["doc_id"], pa.array(stored_ids, pa.string()))
        removed_items = set(kept.filter(drop)["vector_label"].to_pylist())
        kept = kept.filter(pc.invert(drop))
    if plan.restat:
        assert previous is not None  # only documents of the previous generation are restat
        kept = _restat(kept, {previous.stored_id[d]: st for d, st in plan.restat.items()})
    if request.rebuild:  # a new graph: labels start again, after those of the rows it keeps
        next_label = max(kept["label"].to_pylist(), default=-1) + 1
    new_labels = list(range(next_label, next_label + len(new_rows)))
    new_items = _vector_labels(new_rows, new_labels, vectors, reusable(previous, request))
    table = pa.concat_tables([kept, rows_table(new_rows, new_labels, new_items)]).sort_by("label")

    items = set(table["vector_label"].to_pylist())
    dead = removed_items - items  # graph items no chunk holds any more
    old_deleted = old_manifest["counts"]["deleted"] if old_manifest else 0
    deleted = old_deleted + len(dead)
    live = table.num_rows
    # A rebuild starts a new graph; it holds the old vectors only of what could not be read.
    compact = request.rebuild or (
        deleted > 0 and deleted > settings.compact_ratio * (len(items) + deleted)
    )
    if compact or previous is None:
        hnsw, table = _new_graph(previous, table, new_items, vectors, model, settings)
        deleted = 0
    else:
        hnsw = _patched_graph(previous, dead, new_labels, new_items, vectors, settings)
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    documents = len(set(table["doc_id"].to_pylist()))
    manifest = {
        "format": layout.FORMAT,
        "format_version": layout.FORMAT_VERSION,
        "bienc_version": __version__,
        "created_at": old_manifest["created_at"] if old_manifest else now,
        "updated_at": now,
        "model": {
            "name": model.name,
            "path": model.path,
            "fingerprint": model.fingerprint,
            "dim": model.dim,
            "max_seq_length": model.max_seq_length,
            "pooling": model.pooling,
            "normalize": True,  # bienc stores unit vectors whatever the model does
            "backend": query_backend(model),  # what queries use
            "backend_choice": model.backend,  # what the next run encodes with, unless told
            "onnx_dir": str(layout.onnx_dir(Path(), model.fingerprint, query_backend(model))),
        },
        "chunking": {
            "tokenizer": "model",
            "max_tokens": model.max_seq_length,
            "overlap": settings.overlap,
        },
        "hnsw": {
            "space": "cosine",
            "M": settings.M,
            "ef_construction": settings.ef_construction,
            "ef": settings.ef,
            "max_elements": hnsw.get_max_elements(),
            "elements": hnsw.element_count,
        },
        "counts": {
            "documents": documents,
            "chunks": live,
            "vectors": len(set(table["vector_label"].to_pylist())),  # live graph items
            "deleted": deleted,
            "next_label": next_label + len(new_rows),
        },
        "sources": {"roots": roots, "options": jsonable(options)},
        # Files skipped on purpose (empty, binary, too large), so `info` does not call them new.
        "skipped_files": skipped_files(report),
        # What the reading of each indexed file skipped, reported again while it is unchanged.
        "skipped_rows": skipped_rows,
        "last_run": {
            "added": report.added,
            "updated": report.updated,
            "removed": report.removed,
            "unchanged": report.unchanged,
            "skipped": len(report.skipped),
            "errors": len(report.errors),
        },
    }
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
    for item in sorted(dead):
        hnsw.mark_deleted(item)
    if fresh:
        hnsw.add_items(vectors[fresh], [new_labels[i] for i in fresh])
    hnsw.set_ef(settings.ef)
    return hnsw


def _new_graph(previous, table, new_items, vectors, model, settings):
    """A compact graph of the items ``table`` uses, and ``table`` with identical vectors
    merged into one item (the lowest label): also those an older index kept apart."""
    import numpy as np
    import pyarrow as pa

    items = sorted(set(table["vector_label"].to_pylist()))
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
    hnsw = graph.new_hnsw(
        model.dim, len(distinct), M=settings.M, ef_construction=settings.ef_construction
    )
    if distinct:
        hnsw.add_items(matrix[distinct], [items[i] for i in distinct])
    hnsw.set_ef(settings.ef)
    remapped = pa.array([same[item] for item in table["vector_label"].to_pylist()], pa.int64())
    return hnsw, table.set_column(
        table.column_names.index("vector_label"), "vector_label", remapped
    )


def previous_elements(previous: Previous) -> int:
    return int(previous.generation.manifest["hnsw"]["elements"])


def _restat(table: pa.Table, restat: dict[str, tuple[int, int]]) -> pa.Table:
    """Record the new size and mtime of documents whose content did not change."""
    import pyarrow as pa

    doc_ids = table["doc_id"].to_pylist()
    sizes = table["size"].to_pylist()
    mtimes = table["mtime_ns"].to_pylist()
    for i, doc_id in enumerate(doc_ids):
        if doc_id in restat:
            sizes[i], mtimes[i] = restat[doc_id]
    table = table.set_column(
        table.schema.get_field_index("size"), "size", pa.array(sizes, pa.int64())
    )
    return table.set_column(
        table.schema.get_field_index("mtime_ns"), "mtime_ns", pa.array(mtimes, pa.int64())
    )


def rows_table(rows: list[Row], labels: list[int], vector_labels: list[int]) -> pa.Table:
    import pyarrow as pa

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
    return pa.Table.from_pydict(columns, schema=sidecar.sidecar_schema())


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
