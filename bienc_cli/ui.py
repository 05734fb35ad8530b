"""Rendering: records in, text out. Results go to stdout; progress, summaries and errors to stderr.

rich is used only when writing to a terminal; pipes get plain, stable formats.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import sys
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from bienc_cli.indexing import ProgressFn, RunReport
    from bienc_cli.query import Hit

HIT_FORMATS = ("table", "json", "jsonl", "tsv", "csv", "paths")
_CSV_FIELDS = (
    "query",
    "rank",
    "score",
    "path",
    "row_id",
    "line_start",
    "line_end",
    "chunk",
    "snippet",
)


def display_path(path: str, cwd: str | None = None) -> str:
    """The path relative to the current folder when it is inside it, else absolute."""
    cwd = cwd or os.getcwd()
    if path == cwd or path.startswith(cwd.rstrip(os.sep) + os.sep):
        return os.path.relpath(path, cwd)
    return path


def snippet(text: str, width: int = 160) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1].rstrip() + "…"


def location(hit: Hit) -> str:
    """Where a hit is, the way editors and grep print it: path:line or table#row."""
    path = display_path(hit.path)
    if hit.row_id is not None:
        return f"{path}#{hit.row_id}"
    if hit.line_start == hit.line_end:
        return f"{path}:{hit.line_start}"
    return f"{path}:{hit.line_start}-{hit.line_end}"


def hit_record(hit: Hit) -> dict[str, Any]:
    return {
        "query": hit.query,
        "rank": hit.rank,
        "score": round(hit.score, 4),
        "path": display_path(hit.path),
        "doc_id": hit.doc_id,
        "row_id": hit.row_id,
        "kind": hit.kind,
        "chunk": hit.chunk,
        "n_chunks": hit.n_chunks,
        "line_start": hit.line_start,
        "line_end": hit.line_end,
        "char_start": hit.char_start,
        "char_end": hit.char_end,
        "snippet": snippet(hit.text),
        "text": hit.text,
        "meta": hit.meta,
    }


def write_hits(
    results: Sequence[Sequence[Hit]], fmt: str, out: TextIO, *, null: bool = False
) -> None:
    """Write query results in one of HIT_FORMATS."""
    hits = [hit for per_query in results for hit in per_query]
    several = len(results) > 1
    if fmt == "json":
        json.dump([hit_record(h) for h in hits], out, ensure_ascii=False, indent=2)
        out.write("\n")
    elif fmt == "jsonl":
        for hit in hits:
            out.write(json.dumps(hit_record(hit), ensure_ascii=False) + "\n")
    elif fmt == "tsv":
        for hit in hits:
            fields = [f"{hit.score:.4f}", location(hit), snippet(hit.text)]
            out.write("\t".join(([_one_line(hit.query)] if several else []) + fields) + "\n")
    elif fmt == "csv":
        writer = csv.DictWriter(
            out, fieldnames=_CSV_FIELDS, extrasaction="ignore", lineterminator="\n"
        )
        writer.writeheader()
        for hit in hits:
            writer.writerow(hit_record(hit))
    elif fmt == "paths":
        end = "\0" if null else "\n"
        for path in dict.fromkeys(display_path(h.path) for h in hits):
            out.write(path + end)
    else:
        _hits_table(results, out)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _hits_table(results: Sequence[Sequence[Hit]], out: TextIO) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(file=out)
    for hits in results:
        if not hits:
            continue
        table = Table(title=f"[bold]{hits[0].query}[/]" if len(results) > 1 else None, expand=True)
        table.add_column("score", justify="right", style="cyan", no_wrap=True)
        table.add_column("where", style="green", overflow="fold", ratio=2)
        table.add_column("snippet", ratio=5)
        for hit in hits:
            table.add_row(f"{hit.score:.3f}", location(hit), snippet(hit.text, 200))
        console.print(table)


def write_report(report: RunReport, err: TextIO, *, max_skipped: int = 20) -> None:
    """The human summary of an index run, on stderr."""
    generation = f"generation {report.generation}" if report.generation else "nothing to write"
    err.write(
        f"bienc: {report.added} added, {report.updated} updated, {report.removed} removed, "
        f"{report.unchanged} unchanged, {len(report.skipped)} skipped "
        f"({report.chunks_encoded} chunks encoded, {report.chunks_reused} reused) "
        f"in {report.seconds:.1f}s; index: {report.documents} documents, {report.chunks} chunks, "
        f"{generation}\n"
    )
    for item in report.skipped[:max_skipped]:
        where = display_path(item.path) + (f"#{item.row_id}" if item.row_id else "")
        err.write(f"  {'error' if item.error else 'skipped'}: {where}: {item.reason}\n")
    if len(report.skipped) > max_skipped:
        err.write(f"  ... and {len(report.skipped) - max_skipped} more (see --json)\n")
    for note in report.notes[:max_skipped]:
        err.write(f"  note: {display_path(note.path)}: {note.message}\n")


def write_info(info: dict[str, Any], out: TextIO) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column()
    for key, value in _flatten(info):
        table.add_row(key, str(value))
    Console(file=out).print(table)


def _flatten(data: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in data.items():
        if isinstance(value, dict):
            yield from _flatten(value, f"{prefix}{key}.")
        elif isinstance(value, list):
            yield f"{prefix}{key}", ", ".join(map(str, value)) if value else "-"
        else:
            yield f"{prefix}{key}", value


@contextlib.contextmanager
def progress_bar(enabled: bool) -> Iterator[ProgressFn | None]:
    """A progress callback drawn on stderr, or None when stderr is not a terminal (cron)."""
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(file=sys.stderr), transient=True) as bar:
        tasks: dict[str, Any] = {}

        def update(stage: str, done: int, total: int | None) -> None:
            if stage not in tasks:
                label = {"scan": "reading files", "encode": "encoding chunks"}.get(stage, stage)
                tasks[stage] = bar.add_task(label, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        yield update


# --- bienc eval ---------------------------------------------------------------------------

if TYPE_CHECKING:
    from bienc_cli.evaluation import EvalReport, IndexEvaluation

EVAL_FORMATS = ("table", "json", "tsv")
PER_QUERY_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".tsv": "tsv"}  # fmt: skip


def metric_label(name: str) -> str:
    """'ndcg@10' -> 'nDCG@10', as papers and MTEB write them."""
    base, _, cut = name.partition("@")
    labels = {"ndcg": "nDCG", "mrr": "MRR", "map": "MAP", "recall": "Recall"}
    return f"{labels.get(base, base)}@{cut}" if cut else labels.get(base, base)


def write_eval(report: EvalReport, fmt: str, out: TextIO) -> None:
    """The figures of `bienc eval` in one of EVAL_FORMATS."""
    if fmt == "json":
        json.dump(report.to_dict(), out, ensure_ascii=False, indent=2)
        out.write("\n")
    elif fmt == "tsv":
        _eval_tsv(report, out)
    else:
        _eval_tables(report, out)


def _eval_rows(report: EvalReport) -> Iterator[list[Any]]:
    """Rows of the TSV: index, by, group, queries, then each metric."""
    for ev in report.evaluations:
        yield [ev.index, "", "", ev.queries, *(ev.metrics[m] for m in report.metric_names)]
        for breakdown in ev.breakdowns:
            for group in breakdown.groups:
                metrics = (group[m] for m in report.metric_names)
                yield [ev.index, breakdown.column, group["value"], group["queries"], *metrics]
        if ev.ann is not None:
            metrics = (ev.ann.exact[m] for m in report.metric_names)
            yield [ev.index, "search", "exact", ev.queries, *metrics]


def _eval_tsv(report: EvalReport, out: TextIO) -> None:
    out.write("\t".join(["index", "by", "group", "queries", *report.metric_names]) + "\n")
    for row in _eval_rows(report):
        cells = [f"{v:.5f}" if isinstance(v, float) else _one_line(str(v)) for v in row]
        out.write("\t".join(cells) + "\n")


def _eval_tables(report: EvalReport, out: TextIO) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(file=out)
    names = report.metric_names
    s = report.eval_set
    judgements = sum(len(j) for j in s.qrels.values())
    table = Table(title=f"{len(s.queries)} queries, {judgements} judgements, top {report.depth}")
    table.add_column("metric", style="bold")
    for ev in report.evaluations:
        header = f"{display_path(ev.index)}\n{ev.model}\n{ev.documents} docs, {ev.chunks} chunks"
        table.add_column(header, justify="right")
    for name in names:
        values = [ev.metrics[name] for ev in report.evaluations]
        best = max(values)
        cells = [
            f"[green]{v:.4f}[/]" if len(values) > 1 and v == best else f"{v:.4f}" for v in values
        ]
        table.add_row(metric_label(name), *cells)
    console.print(table)
    # Breakdowns show nDCG@10 and recall (what is missed) to fit a terminal; json/tsv have all.
    brief = ["ndcg@10", *(n for n in names if n.startswith("recall@"))]
    for ev in report.evaluations:
        for breakdown in ev.breakdowns:
            console.print(_breakdown_table(ev, breakdown, brief, len(report.evaluations) > 1))
        if ev.ann is not None:
            _ann_tables(console, ev, names)


def _breakdown_table(ev: IndexEvaluation, breakdown: Any, names: list[str], several: bool) -> Any:
    from rich import box
    from rich.table import Table

    where = f" ({display_path(ev.index)})" if several else ""
    table = Table(
        title=f"by {breakdown.side} {breakdown.column}{where}",
        caption="R@k: recall@k",
        box=box.SIMPLE_HEAD,
    )
    table.add_column(breakdown.column, style="bold", overflow="fold")
    table.add_column("queries", justify="right")
    for name in names:  # R@k, not Recall@k: a breakdown must fit 80 columns
        table.add_column(name.replace("recall@", "R@").replace("ndcg", "nDCG"), justify="right")
    for group in breakdown.groups:
        cells = [f"{group[name]:.4f}" for name in names]
        table.add_row(str(group["value"]), str(group["queries"]), *cells)
    return table


def _ann_tables(console: Any, ev: IndexEvaluation, names: list[str]) -> None:
    from rich.table import Table

    ann = ev.ann
    assert ann is not None
    recalls = [f"recall@{k}" for k in ann.ks]
    table = Table(
        title=f"HNSW against exact search, {ann.chunks} chunks ({display_path(ev.index)})",
        caption="an ef below k searches with ef = k, as hnswlib does",
    )
    table.add_column("ef", justify="right", style="bold")
    for name in recalls:
        table.add_column(f"chunk {metric_label(name)}", justify="right")
    for point in ann.curve:
        marker = " (stored)" if point["ef"] == ann.stored_ef else ""
        cells = []
        for name in recalls:
            value = point[name]
            style = "green" if value >= ann.target else "yellow"
            cells.append(f"[{style}]{value:.4f}[/]")
        table.add_row(f"{point['ef']}{marker}", *cells)
    console.print(table)
    smallest = ", ".join(
        f"{metric_label(name)} {ann.min_ef[name] if ann.min_ef[name] is not None else 'not reached'}"
        for name in recalls
    )
    console.print(f"smallest ef reaching recall {ann.target:g}: {smallest}")
    if ann.meets_target:
        console.print(f"stored ef {ann.stored_ef}: [green]meets the target[/]")
    else:
        short = [n for n in recalls if ann.stored_recall[n] < ann.target]
        reached = [ann.min_ef[n] for n in short if ann.min_ef[n] is not None]
        below = ", ".join(f"{metric_label(n)} {ann.stored_recall[n]:.4f}" for n in short)
        hint = f"; query with `--ef {max(reached)}`" if reached else ""
        console.print(f"stored ef {ann.stored_ef}: [yellow]below the target[/] ({below}){hint}")
    for name in recalls:  # document queries search wider than the stored ef: say how wide
        if ann.query_ef[name] > ann.stored_ef:
            console.print(
                f"`bienc query -k {name.split('@')[1]}` searches with ef {ann.query_ef[name]}: "
                f"chunk {metric_label(name)} {ann.query_recall[name]:.4f}"
            )
    compare = Table(title="documents: HNSW against exact search")
    compare.add_column("metric", style="bold")
    compare.add_column("HNSW", justify="right")
    compare.add_column("exact", justify="right")
    compare.add_column("difference", justify="right")
    for name in names:
        hnsw, exact = ev.metrics[name], ann.exact[name]
        compare.add_row(metric_label(name), f"{hnsw:.4f}", f"{exact:.4f}", f"{hnsw - exact:+.4f}")
    console.print(compare)


def write_eval_notes(report: EvalReport, err: TextIO) -> None:
    """What was left out or cannot be matched, on stderr: figures mean little without it."""
    s = report.eval_set
    if s.unjudged:
        err.write(f"bienc: note: {s.unjudged} queries have no judgement; ignored\n")
    if s.no_text:
        err.write(f"bienc: note: {s.no_text} judged queries are not in the queries file; ignored\n")
    if s.no_relevant:
        err.write(
            f"bienc: note: {s.no_relevant} judged queries have no relevant document "
            "(grade > 0); they score 0, as in trec_eval\n"
        )
    for ev in report.evaluations:
        if ev.judged_not_in_index:
            examples = ", ".join(ev.unmatched_examples)
            err.write(
                f"bienc: warning: {display_path(ev.index)}: {ev.judged_not_in_index} relevant "
                f"judgements match no document (e.g. {examples}); they count as not retrieved\n"
            )
        if ev.ambiguous_ids:
            err.write(
                f"bienc: warning: {display_path(ev.index)}: {ev.ambiguous_ids} judged ids match "
                "several documents; write them as paths relative to the indexed folder\n"
            )


def per_query_format(path: str) -> str:
    """The per-query file's format, from its extension (JSON Lines unless .csv/.tsv/.json)."""
    return PER_QUERY_FORMATS.get(os.path.splitext(path)[1].lower(), "jsonl")


def write_per_query(report: EvalReport, fmt: str, out: TextIO) -> None:
    """One record per (index, query): its metrics, the first relevant rank, what it missed."""
    records = []
    for ev in report.evaluations:
        for result in ev.per_query:
            record: dict[str, Any] = {"index": ev.index, "query_id": result.query_id}
            record["query"] = result.text
            record["relevant"] = result.relevant
            record["first_relevant_rank"] = result.first_relevant_rank
            record.update({name: round(v, 5) for name, v in result.scores.items()})
            record.update({f"by_{column}": values for column, values in result.groups.items()})
            record["missed"] = result.missed
            record["retrieved"] = result.retrieved
            records.append(record)
    if fmt == "json":
        json.dump(records, out, ensure_ascii=False, indent=2)
        out.write("\n")
    elif fmt == "jsonl":
        for record in records:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
    else:
        fields = list(records[0]) if records else ["index", "query_id", "query"]
        writer = csv.DictWriter(
            out, fieldnames=fields, delimiter="\t" if fmt == "tsv" else ",", lineterminator="\n"
        )
        writer.writeheader()
        for record in records:
            writer.writerow(
                {k: json.dumps(v, ensure_ascii=False) if isinstance(v, list) else v
                 for k, v in record.items()}
            )  # fmt: skip


# --- bienc cluster ------------------------------------------------------------------------

if TYPE_CHECKING:
    from bienc_cli.cluster import ClusterReport, DocumentAssignment

CLUSTER_FORMATS = ("table", "json", "jsonl", "csv", "tsv", "parquet")
CLUSTER_SUFFIXES = {".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".tsv": "tsv", ".parquet": "parquet"}  # fmt: skip
_CLUSTER_CSV_FIELDS = (
    "path", "row_id", "title", "cluster", "label", "distance", "probability",
)  # fmt: skip


def doc_location(path: str, row_id: str | None) -> str:
    """path, or path#row_id for a table row."""
    return display_path(path) + (f"#{row_id}" if row_id is not None else "")


def cluster_document_record(doc: DocumentAssignment) -> dict[str, Any]:
    return {
        "path": display_path(doc.path),
        "doc_id": doc.doc_id,
        "row_id": doc.row_id,
        "title": doc.title,
        "cluster": doc.cluster,
        "label": doc.label,
        "distance": None if doc.distance is None else round(doc.distance, 4),
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
                "representatives": [doc_location(d.path, d.row_id) for d in representatives],
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
        "sources": [display_path(s) for s in report.sources],
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
            distance = "" if doc.distance is None else f"{doc.distance:.4f}"
            where = doc_location(doc.path, doc.row_id)
            out.write(f"{doc.cluster}\t{distance}\t{where}\t{_one_line(doc.label)}\n")
    else:
        _cluster_tables(report, out)


def write_cluster_parquet(report: ClusterReport, path: str) -> None:
    """The per-document records as a Parquet file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    records = [cluster_document_record(d) for d in report.documents]
    schema = pa.schema(
        [
            ("path", pa.string()),
            ("doc_id", pa.string()),
            ("row_id", pa.string()),
            ("title", pa.string()),
            ("cluster", pa.int32()),
            ("label", pa.string()),
            ("distance", pa.float32()),
            ("probability", pa.float32()),
        ]
    )
    pq.write_table(pa.Table.from_pylist(records, schema=schema), path)


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
        distance = "" if doc.distance is None else f"{doc.distance:.3f}"
        where = doc_location(doc.path, doc.row_id)
        documents.add_row(str(doc.cluster), distance, where, doc.title)
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
            ", ".join(cluster.keywords) or cluster.label,
            "\n".join(d.title or doc_location(d.path, d.row_id) for d in representatives),
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
    for item in report.skipped[:max_skipped]:
        where = display_path(item.path) + (f"#{item.row_id}" if item.row_id else "")
        err.write(f"  {'error' if item.error else 'skipped'}: {where}: {item.reason}\n")
    if len(report.skipped) > max_skipped:
        err.write(f"  ... and {len(report.skipped) - max_skipped} more\n")


# --- bienc dedup --------------------------------------------------------------------------

DEDUP_FORMATS = ("table", "json", "jsonl", "csv", "tsv", "ids")
_DEDUP_CSV_FIELDS = (
    "group", "role", "similarity", "match", "path", "row_id", "kind", "reference", "doc_id",
)  # fmt: skip
_PAIR_CSV_FIELDS = ("similarity", "match", "passage", "a", "b")


def _dedup_doc(doc: dict[str, Any]) -> dict[str, Any]:
    """A document of a dedup record, its path shown relative to the current folder."""
    return dict(doc, path=display_path(doc["path"]))


def _dedup_where(doc: dict[str, Any]) -> str:
    path = display_path(doc["path"])
    return f"{path}#{doc['row_id']}" if doc.get("row_id") is not None else path


def write_dedup_groups(
    groups: Sequence[dict[str, Any]], fmt: str, out: TextIO, *, null: bool = False
) -> None:
    """Duplicate groups (dedup.group_records) in one of DEDUP_FORMATS.

    ``ids`` lists what would be removed: the row id of table rows, the path of files.
    """
    shown = [
        dict(g, keeper=_dedup_doc(g["keeper"]), members=[_dedup_doc(m) for m in g["members"]])
        for g in groups
    ]
    if fmt == "json":
        json.dump(shown, out, ensure_ascii=False, indent=2)
        out.write("\n")
    elif fmt == "jsonl":
        for group in shown:
            out.write(json.dumps(group, ensure_ascii=False) + "\n")
    elif fmt == "ids":
        end = "\0" if null else "\n"
        for group in groups:
            for m in group["members"]:
                out.write((m["row_id"] if m["row_id"] is not None else m["path"]) + end)
    elif fmt in ("csv", "tsv"):
        rows = []
        for group in shown:
            rows.append(
                {"group": group["group"], "role": "keep", "similarity": 1.0} | group["keeper"]
            )
            rows += [{"group": group["group"], "role": "duplicate"} | m for m in group["members"]]
        if fmt == "csv":
            writer = csv.DictWriter(
                out, fieldnames=_DEDUP_CSV_FIELDS, extrasaction="ignore", lineterminator="\n"
            )
            writer.writeheader()
            writer.writerows(rows)
        else:
            for row in rows:
                role = row["role"] if row["role"] == "keep" else row["match"]
                where = (
                    f"{row['path']}#{row['row_id']}" if row["row_id"] is not None else row["path"]
                )
                out.write(f"{row['group']}\t{role}\t{row['similarity']:.4f}\t{where}\n")
    else:
        _dedup_groups_table(groups, out)


def _dedup_groups_table(groups: Sequence[dict[str, Any]], out: TextIO) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(expand=True)
    table.add_column("group", justify="right", no_wrap=True)
    table.add_column("", no_wrap=True)
    table.add_column("sim", justify="right", style="cyan", no_wrap=True)
    table.add_column("where", overflow="fold", ratio=2)
    table.add_column("start of text", ratio=3)
    for group in groups:
        keeper = group["keeper"]
        label = "[bold green]keep[/]" + (" (ref)" if keeper["reference"] else "")
        table.add_row(
            str(group["group"]),
            label,
            "",
            escape(_dedup_where(keeper)),
            escape(snippet(keeper["snippet"], 90)),
        )
        for m in group["members"]:
            table.add_row(
                "",
                m["match"],
                f"{m['similarity']:.3f}",
                escape(_dedup_where(m)),
                escape(snippet(m["snippet"], 90)),
            )
        table.add_section()
    Console(file=out).print(table)


def write_dedup_pairs(pairs: Sequence[dict[str, Any]], fmt: str, out: TextIO) -> None:
    """Every duplicate pair (dedup.pair_records), for `bienc dedup --pairs`."""
    if fmt in ("json", "jsonl"):
        if fmt == "json":
            json.dump(list(pairs), out, ensure_ascii=False, indent=2)
            out.write("\n")
        else:
            for pair in pairs:
                out.write(json.dumps(pair, ensure_ascii=False) + "\n")
    elif fmt == "csv":
        writer = csv.DictWriter(out, fieldnames=_PAIR_CSV_FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(pairs)
    elif fmt == "tsv":
        for pair in pairs:
            a, b = display_path(pair["a"]), display_path(pair["b"])
            out.write(f"{pair['similarity']:.4f}\t{pair['match']}\t{a}\t{b}\n")
    else:
        from rich.console import Console
        from rich.markup import escape
        from rich.table import Table

        table = Table(expand=True)
        table.add_column("sim", justify="right", style="cyan", no_wrap=True)
        table.add_column("", no_wrap=True)
        table.add_column("a", overflow="fold")
        table.add_column("b", overflow="fold")
        for pair in pairs:
            table.add_row(
                f"{pair['similarity']:.3f}",
                pair["match"],
                escape(display_path(pair["a"])),
                escape(display_path(pair["b"])),
            )
        Console(file=out).print(table)


def write_calibration(data: dict[str, Any], fmt: str, out: TextIO) -> None:
    """`bienc dedup --calibrate`: nearest-neighbour similarities and pairs around thresholds."""
    if fmt in ("json", "jsonl"):
        json.dump(data, out, ensure_ascii=False, indent=2 if fmt == "json" else None)
        out.write("\n")
        return
    total = sum(b["count"] for b in data["histogram"])
    copies = data["exact_copies"]
    out.write(
        f"Similarity of each of {total} distinct texts to its nearest neighbour "
        f"(exact copies set aside: {copies}):\n\n"
    )
    widest = max((b["count"] for b in data["histogram"]), default=1) or 1
    for b in data["histogram"]:
        bar = "#" * max(1 if b["count"] else 0, round(40 * b["count"] / widest))
        out.write(f"  {b['low']:.2f}-{b['high']:.2f} {b['count']:7d}  {bar}\n")
    out.write("\n")
    shown: set[tuple[str, str]] = set()
    for example in data["thresholds"]:
        out.write(
            f"threshold {example['threshold']:.2f}: {example['documents_above']} texts have a "
            f"neighbour at or above it ({100 * example['share_above']:.1f}%)\n"
        )
        for side in ("above", "below"):
            pair = example[side]
            if pair is None:
                continue
            key = (pair["a"]["doc_id"], pair["b"]["doc_id"])
            if key in shown:
                out.write(f"  just {side} ({pair['similarity']:.3f}): the pair shown above\n")
                continue
            shown.add(key)
            out.write(f"  just {side} ({pair['similarity']:.3f}):\n")
            for doc in (pair["a"], pair["b"]):
                out.write(f"    {_dedup_where(doc)}: {snippet(doc['snippet'], 110)}\n")
        out.write("\n")


def write_dedup_summary(summary: dict[str, Any], err: TextIO) -> None:
    """One line on stderr: what was compared and what was found."""
    err.write(
        f"bienc: {_count(summary['documents'], 'document')}, "
        f"{_count(summary['duplicates'], 'duplicate')} in {_count(summary['groups'], 'group')} "
        f"({summary['exact']} exact) at threshold {summary['threshold']:.2f}, "
        f"keep {summary['keep']}, in {summary['seconds']:.1f}s\n"
    )
    for line in summary.get("notes", []):
        err.write(f"  {line}\n")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


ACTION_VERBS = {"move": "moved", "delete": "deleted", "hardlink": "hardlinked", "symlink": "symlinked", "restore": "restored"}  # fmt: skip


def write_action_report(report: dict[str, Any], fmt: str, out: TextIO) -> None:
    """What an apply or undo did (actions.ActionReport.to_dict), one file per line."""
    if fmt in ("json", "jsonl"):
        json.dump(report, out, ensure_ascii=False, indent=2 if fmt == "json" else None)
        out.write("\n")
        return
    verb = ACTION_VERBS[report["action"]]
    for f in report["files"]:
        status = {"done": verb, "would": f"would be {verb}"}.get(f["status"], f["status"])
        fields = [status, display_path(f["path"])]
        if f["status"] in ("done", "would"):
            # links: what it now points to; otherwise where it went (or, undone, came from)
            linked = report["action"] in ("hardlink", "symlink")
            fields.append(display_path(f["keeper"] if linked else f["dest"]))
        if f["reason"]:
            fields.append(f["reason"])
        out.write("\t".join(fields) + "\n")


def write_action_summary(report: dict[str, Any], err: TextIO) -> None:
    """What an apply or undo did, in one line on stderr, and how to undo it."""
    counts = report["counts"]
    verb = ACTION_VERBS[report["action"]]
    if report["dry_run"]:
        parts = [f"{_count(counts['would'], 'file')} would be {verb}"]
    else:
        parts = [f"{_count(counts['done'], 'file')} {verb}"]
    labels = {"already": "already done", "skipped": "skipped", "failed": "failed"}
    parts += [f"{counts[s]} {label}" for s, label in labels.items() if counts[s]]
    dry = " (dry run: nothing changed)" if report["dry_run"] else ""
    err.write(f"bienc: {', '.join(parts)}{dry}\n")
    if report["dry_run"] or report["action"] == "restore" or not counts["done"]:
        return
    if report["trash"]:
        err.write(f"  originals kept in {display_path(report['trash'])}; remove it to free space\n")
    journal = display_path(report["journal"])
    err.write(f"  journal: {journal}; undo with: bienc dedup --undo {journal}\n")
