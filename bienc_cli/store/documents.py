"""Document-level reads from a generation: per document its vector, the sidecar values of its
first chunk, its extent, its chunk vectors and its text; per chunk label its document.
Callers get lists, dicts and arrays, never Arrow tables, so pyarrow stays in the store."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bienc_cli.store import generations as store

if TYPE_CHECKING:
    import numpy as np


@dataclass
class StoredDocuments:
    """The documents of a generation, each at the same position in every field."""

    doc_ids: list[str]
    vectors: np.ndarray  # store.document_vectors: unit rows, float32
    columns: dict[str, list[Any]]  # sidecar column -> the value of each document's first chunk
    first_labels: list[int]  # the label of each document's first stored chunk (index order)
    lengths: list[int]  # characters of extracted text: the end of the last chunk


def read_documents(generation: store.Generation, columns: Sequence[str]) -> StoredDocuments:
    """Every document of ``generation`` with these sidecar ``columns`` of its first chunk."""
    docs = store.document_vectors(generation, columns=columns)
    extent = generation.read_sidecar(columns=["doc_id", "label", "char_end"])
    extent = extent.group_by("doc_id").aggregate([("label", "min"), ("char_end", "max")])
    doc_ids = extent["doc_id"].to_pylist()
    first_label = dict(zip(doc_ids, extent["label_min"].to_pylist()))
    length = dict(zip(doc_ids, extent["char_end_max"].to_pylist()))
    return StoredDocuments(
        doc_ids=docs.doc_ids,
        vectors=docs.vectors,
        columns={name: docs.table[name].to_pylist() for name in columns},
        first_labels=[first_label[doc_id] for doc_id in docs.doc_ids],
        lengths=[int(length[doc_id]) for doc_id in docs.doc_ids],
    )


def chunk_vectors(generation: store.Generation, doc_ids: Sequence[str]) -> dict[str, np.ndarray]:
    """The stored chunk vectors of these documents, as unit rows, one array per document."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    table = generation.read_sidecar(columns=["vector_label", "doc_id"])
    table = table.filter(pc.is_in(table["doc_id"], pa.array(list(doc_ids), pa.string())))
    vectors = store.row_vectors(generation, table["vector_label"].to_numpy())
    rows: dict[str, list[int]] = defaultdict(list)
    for row, doc_id in enumerate(table["doc_id"].to_pylist()):
        rows[doc_id].append(row)
    return {
        doc_id: np.ascontiguousarray(vectors[selected], dtype=np.float32)
        for doc_id, selected in rows.items()
    }


def first_chunk_rows(generation: store.Generation, columns: Sequence[str]) -> list[dict[str, Any]]:
    """The sidecar ``columns`` of each document's first chunk, one dict per document."""
    import pyarrow.compute as pc

    table = generation.read_sidecar(columns=columns, filters=pc.field("chunk") == 0)
    return table.to_pylist()


def label_documents(generation: store.Generation) -> dict[int, str]:
    """Every chunk's label -> the doc_id of its document."""
    table = generation.read_sidecar(columns=("label", "doc_id"))
    return dict(zip(table["label"].to_pylist(), table["doc_id"].to_pylist()))


def document_texts(generation: store.Generation) -> dict[str, str]:
    """Each document's text, rebuilt from its stored chunks without their overlaps."""
    table = generation.read_sidecar(columns=["doc_id", "chunk", "char_start", "char_end", "text"])
    table = table.sort_by([("doc_id", "ascending"), ("chunk", "ascending")])
    data = table.to_pydict()
    parts: dict[str, list[str]] = {}
    ends: dict[str, int] = {}
    for doc_id, start, end, text in zip(
        data["doc_id"], data["char_start"], data["char_end"], data["text"]
    ):
        previous_end = ends.get(doc_id)
        # Consecutive chunks share `overlap` tokens; count those words once for c-TF-IDF.
        if previous_end is not None and start < previous_end and len(text) == end - start:
            text = text[previous_end - start :]
        parts.setdefault(doc_id, []).append(text)
        ends[doc_id] = end
    return {doc_id: "".join(chunks) for doc_id, chunks in parts.items()}
