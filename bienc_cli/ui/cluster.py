"""Rendering for `bienc cluster`: cluster tables, records and the summary.

Shared helpers (display_path, snippet, ...) live in bienc_cli.ui.output; rich is used only on terminals.
"""

from __future__ import annotations

import csv
import json
from typing import TYPE_CHECKING, Any, TextIO

from bienc_cli.ui.output import (
    cell,
    display_path,
    escape_text,
    fixed,
    json_path,
    one_line,
    write_skipped,
)

if TYPE_CHECKING:
    from bienc_cli.cluster.corpus import ClusterReport, DocumentAssignment

CLUSTER_FORMATS = ("table", "json", "jsonl", "csv", "tsv", "parquet")
CLUSTER_SUFFIXES = {".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".tsv": "tsv", ".parquet": "parquet"}  # fmt: skip
_CLUSTER_CSV_FIELDS = (
    "path", "row_id", "title", "cluster", "label", "distance", "probability",
)  # fmt: skip


def doc_location(path: str, row_id: str | None) -> str:
    """path, or path#row_id for a table row."""
    return display_path(path) + (f"#{row_id}" if row_id is not None else "")


def _json_location(doc: DocumentAssignment) -> str:
    return json_path(doc.path) + (f"#{doc.row_id}" if doc.row_id is not None else "")


def cluster_document_record(doc: DocumentAssignment) -> dict[str, Any]:
    return {
        "path": json_path(doc.path),
        "doc_id": doc.doc_id,
        "row_id": doc.row_id,
        "title": doc.title,
        "cluster": doc.cluster,
        "label": doc.label,
        "distance": None if doc.distance is None else round(doc.distance, 4) + 0.0,  # not -0.0
        "probability": None if doc.probability is None else round(doc.probability, 4),
    }


def cluster_records(report: ClusterReport) -> list[dict[str, Any]]:
    """One record per cluster: size, keywords, label, cohesion and representative documents."""
    records = []
    for cluster in report.clustering.clusters:
        representatives = [report.documents[i] for i in cluster.representatives]
        records.append(
            {
                "cluster": cluster.id,
                "size": cluster.size,
                "label": cluster.label,
                "keywords": cluster.keywords,
                "cohesion": None if cluster.cohesion is None else round(cluster.cohesion, 4),
                "representatives": [_json_location(d) for d in representatives],
            }
        )
    return records


def cluster_summary(report: ClusterReport) -> dict[str, Any]:
    """How the clusters were found: method, parameters, and the automatic choice of K."""
    c = report.clustering
    summary: dict[str, Any] = {
        "method": c.method,
        "params": c.params,
        "model": report.model,
        "sources": [json_path(s) for s in report.sources],
        "n_documents": len(report.documents),
        "n_clusters": c.n_clusters,
        "n_outliers": c.n_outliers,
    }
    if c.k_choice is not None:
        summary["k_choice"] = {
            "k": c.k_choice.k,
            "criterion": c.k_choice.criterion,
            "sample": c.k_choice.sample,
            "scores": {str(k): round(v, 4) for k, v in c.k_choice.scores.items()},
        }
    return summary


def write_clusters(report: ClusterReport, fmt: str, out: TextIO) -> None:
    """`bienc cluster` output in one of CLUSTER_FORMATS but parquet (see write_cluster_parquet)."""
    documents = [cluster_document_record(d) for d in report.documents]
    if fmt == "json":
        data = {
            **cluster_summary(report),
            "clusters": cluster_records(report),
            "documents": documents,
        }
        json.dump(data, out, ensure_ascii=False, indent=2)
        out.write("\n")
    elif fmt == "jsonl":
        for record in documents:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
    elif fmt == "csv":
        writer = csv.DictWriter(
            out, fieldnames=_CLUSTER_CSV_FIELDS, extrasaction="ignore", lineterminator="\n"
        )
        writer.writeheader()
        writer.writerows(documents)
    elif fmt == "tsv":
        for doc in report.documents:
            distance = "" if doc.distance is None else fixed(doc.distance)
            fields = [str(doc.cluster), distance, doc_location(doc.path, doc.row_id)]
            fields.append(one_line(doc.label))
            out.write("\t".join(escape_text(f) for f in fields) + "\n")
    else:
        _cluster_tables(report, out)


# The Parquet schema of the per-document records: typed, whatever the values.
_CLUSTER_PARQUET_TYPES = {
    "path": "string",
    "doc_id": "string",
    "row_id": "string",
    "title": "string",
    "cluster": "int32",
    "label": "string",
    "distance": "float32",
    "probability": "float32",
}


def write_cluster_parquet(report: ClusterReport, path: str) -> None:
    """The per-document records as a Parquet file."""
    from bienc_cli.inputs.table_output import write_parquet

    records = [cluster_document_record(d) for d in report.documents]
    write_parquet(records, path, _CLUSTER_PARQUET_TYPES)


def _cluster_tables(report: ClusterReport, out: TextIO) -> None:
    """Documents grouped by cluster, nearest the centre first; then one row per cluster."""
    from rich.console import Console
    from rich.table import Table

    console = Console(file=out)
    order = sorted(
        range(len(report.documents)),
        key=lambda i: (
            report.documents[i].cluster == -1,
            report.documents[i].cluster,
            report.documents[i].distance or 0.0,
        ),
    )
    documents = Table(expand=True)
    documents.add_column("cluster", justify="right", style="cyan", no_wrap=True)
    documents.add_column("distance", justify="right", no_wrap=True)
    documents.add_column("document", style="green", overflow="fold", ratio=3)
    documents.add_column("title", ratio=4)
    for i in order:
        doc = report.documents[i]
        distance = "" if doc.distance is None else fixed(doc.distance, 3)
        where = doc_location(doc.path, doc.row_id)
        documents.add_row(str(doc.cluster), distance, cell(where), cell(doc.title))
    console.print(documents)
    summary = cluster_summary(report)
    title = f"{summary['n_documents']} documents, {summary['n_clusters']} clusters"
    clusters = Table(title=f"{title} ({report.clustering.method})", expand=True)
    clusters.add_column("cluster", justify="right", style="cyan", no_wrap=True)
    clusters.add_column("size", justify="right", no_wrap=True)
    clusters.add_column("keywords", style="bold", ratio=3)
    clusters.add_column("nearest the centre", style="green", overflow="fold", ratio=4)
    for cluster in report.clustering.clusters:
        representatives = [report.documents[i] for i in cluster.representatives]
        clusters.add_row(
            str(cluster.id),
            str(cluster.size),
            cell(", ".join(cluster.keywords) or cluster.label),
            cell([d.title or doc_location(d.path, d.row_id) for d in representatives]),
        )
    console.print(clusters)


def cluster_method(report: ClusterReport) -> str:
    """How the clusters were made, in a few words: 'kmeans, K=5 by silhouette 0.153 over K=2..20'."""
    c = report.clustering
    how = c.method + (f" ({c.params['linkage']} linkage)" if "linkage" in c.params else "")
    if c.k_choice is not None and c.k_choice.scores:
        tried = sorted(c.k_choice.scores)
        best = c.k_choice.scores[c.k_choice.k]
        how += f", K={c.k_choice.k} by silhouette {best:.3f} over K={tried[0]}..{tried[-1]}"
    elif "k" in c.params:
        how += f", K={c.params['k']}"
    elif c.params.get("threshold") is not None:
        how += f", threshold {c.params['threshold']:g}"
    elif "min_cluster_size" in c.params:
        how += f", min cluster size {c.params['min_cluster_size']}"
    return how


def write_cluster_report(report: ClusterReport, err: TextIO, *, max_skipped: int = 20) -> None:
    """One summary line on stderr: what was clustered, how K was chosen, what was skipped."""
    c = report.clustering
    how = cluster_method(report)
    outliers = f", {c.n_outliers} outliers" if c.method == "hdbscan" else ""
    err.write(
        f"bienc: {len(report.documents)} documents in {c.n_clusters} clusters ({how}){outliers}\n"
    )
    write_skipped(report.skipped, err, max_skipped=max_skipped)
