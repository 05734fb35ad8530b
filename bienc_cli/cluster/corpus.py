"""The documents `bienc cluster` groups: from an index (its stored vectors, no model) or from
SOURCES (read into a temporary index, deleted afterwards), with their texts and titles."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bienc_cli.cluster.algorithms import Clustering, ClusterOptions, check_options, cluster_vectors
from bienc_cli.errors import UsageError
from bienc_cli.inputs.documents import real_path
from bienc_cli.util.text import shorten

if TYPE_CHECKING:
    import numpy as np

    from bienc_cli.indexing.request import IndexRequest, ProgressFn
    from bienc_cli.query.search import EncoderFactory


@dataclass
class DocumentAssignment:
    """One document's place in the clustering."""

    doc_id: str
    path: str  # absolute path of the source file
    row_id: str | None  # table rows
    kind: str
    title: str  # the first line of its text (or a table row's "title" column)
    cluster: int  # -1: outlier
    label: str  # the cluster's label
    distance: float | None  # cosine distance to the cluster's centroid; None for outliers
    probability: float | None  # hdbscan: membership strength; None for other methods
    # As indexed, to tell whether the file still holds the text that was clustered:
    doc_hash: str = ""
    size: int = 0
    mtime_ns: int = 0


@dataclass
class ClusterReport:
    """What `bienc cluster` found, ready for the renderers, the plot and ``organize``."""

    documents: list[DocumentAssignment]
    clustering: Clustering
    vectors: np.ndarray  # the document vectors, row i = documents[i]
    texts: list[str]  # each document's text, joined from its stored chunks
    sources: list[str]  # the folders and files the documents came from
    model: str
    skipped: list[Any] = field(default_factory=list)  # documents.Skipped, from a temporary index
    notes: list[Any] = field(default_factory=list)  # documents.Note
    # (index into documents, why): files changed or gone since they were indexed, found
    # after clustering; they are clustered as indexed and left out of --organize
    stale: list[tuple[int, str]] = field(default_factory=list)

    @property
    def errors(self) -> list[Any]:
        return [s for s in self.skipped if s.error]


def cluster_index(root: Path, options: ClusterOptions) -> ClusterReport:
    """Cluster the documents of an existing index by their stored vectors: no model is loaded."""
    from bienc_cli.store import generations as store
    from bienc_cli.store.documents import document_texts

    generation = store.open_index(root)
    fields = ["path", "row_id", "kind", "meta", "doc_hash", "size", "mtime_ns"]
    docs = store.document_vectors(generation, columns=fields)
    if not docs.doc_ids:
        raise UsageError(f"the index at {root} holds no documents; add some with `bienc index`")
    texts = document_texts(generation)
    texts = [texts.get(doc_id, "") for doc_id in docs.doc_ids]
    clustering = cluster_vectors(docs.vectors, texts, options)
    columns = docs.table.select(fields).to_pydict()
    labels = {c.id: c.label for c in clustering.clusters}
    documents = []
    for i, doc_id in enumerate(docs.doc_ids):
        cluster = int(clustering.labels[i])
        distance = float(clustering.distances[i])
        documents.append(
            DocumentAssignment(
                doc_id=doc_id,
                path=real_path(columns["path"][i]),
                row_id=columns["row_id"][i],
                kind=columns["kind"][i],
                title=_title(texts[i], columns["meta"][i]),
                cluster=cluster,
                label=labels[cluster],
                distance=None if math.isnan(distance) else distance,
                probability=None
                if clustering.probabilities is None
                else float(clustering.probabilities[i]),
                doc_hash=columns["doc_hash"][i],
                size=columns["size"][i],
                mtime_ns=columns["mtime_ns"][i],
            )
        )
    sources = generation.manifest.get("sources", {})
    table_options = sources.get("options", {})
    return ClusterReport(
        documents=documents,
        clustering=clustering,
        vectors=docs.vectors,
        texts=texts,
        sources=list(sources.get("roots", [])),
        model=generation.manifest["model"]["name"],
        # Checked last, after clustering (which may take a while), just before anything uses
        # the files: an index is a snapshot, and --organize must not file what is no longer so.
        stale=stale_documents(
            documents,
            text_columns=tuple(table_options.get("text_columns") or ()),
            id_column=table_options.get("id_column"),
        ),
    )


def stale_documents(
    documents: list[DocumentAssignment],
    *,
    text_columns: tuple[str, ...] = (),
    id_column: str | None = None,
) -> list[tuple[int, str]]:
    """The documents whose file no longer holds the text they were clustered by, and why.

    The check dedup makes before it reports a file (size and mtime as indexed, else the
    text read again and hashed; a file only touched is still in). ``text_columns`` and
    ``id_column`` read table rows as the index did.
    """
    from bienc_cli.dedup.detect import DocRecord
    from bienc_cli.dedup.stale import disk_problem

    cache: dict[str, dict[str | None, str]] = {}
    stale = []
    for i, doc in enumerate(documents):
        record = DocRecord(
            doc_id=doc.doc_id,
            path=doc.path,
            kind=doc.kind,
            row_id=doc.row_id,
            doc_hash=doc.doc_hash,
            size=doc.size,
            mtime_ns=doc.mtime_ns,
        )
        problem = disk_problem(record, cache, (text_columns, id_column))
        if problem:
            stale.append((i, problem))
    return stale


def cluster_sources(
    request: IndexRequest,
    options: ClusterOptions,
    *,
    encoder_factory: EncoderFactory | None = None,
    progress: ProgressFn | None = None,
) -> ClusterReport:
    """Index ``request.sources`` into a temporary index, cluster them, and delete the index."""
    from bienc_cli.indexing.temporary import temporary_index

    check_options(options)  # before encoding anything
    with temporary_index(
        request, prefix="bienc-cluster-", encoder_factory=encoder_factory, progress=progress
    ) as (run, generation):
        if run.documents == 0:
            raise UsageError("found no text to cluster in the given sources")
        report = cluster_index(generation.root, options)
    report.skipped, report.notes = list(run.skipped), list(run.notes)
    return report


def _title(text: str, meta: str | None) -> str:
    """A document's title: a table row's title column, else its first line of text."""
    if meta:
        import json

        try:
            fields = json.loads(meta)
        except ValueError:
            fields = {}
        for key in ("title", "name", "subject", "headline"):
            if isinstance(fields.get(key), str) and fields[key].strip():
                return shorten(fields[key], 80)
    for line in text.splitlines():
        # Drop heading and comment marks: '# Basil', '"""Retry a flaky call.', '// main'
        line = line.strip().lstrip("#\"'/*;-= \t").rstrip("\"'").removesuffix("*/").strip()
        if line:
            return shorten(line, 80)
    return ""
