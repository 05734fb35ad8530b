"""Rendering for `bienc eval`: metric tables, notes and per-query files.

Shared helpers (display_path, snippet, ...) live in bienc_cli.ui.output; rich is used only on terminals.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, TextIO

from bienc_cli.ui.output import cell, display_path, escape_text, fixed, one_line

if TYPE_CHECKING:
    from bienc_cli.evaluation.records import EvalReport, IndexEvaluation

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
        cells = [fixed(v, 5) if isinstance(v, float) else one_line(str(v)) for v in row]
        out.write("\t".join(escape_text(c) for c in cells) + "\n")


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
        header = [display_path(ev.index), ev.model, f"{ev.documents} docs, {ev.chunks} chunks"]
        table.add_column(cell(header), justify="right")
    for name in names:
        values = [ev.metrics[name] for ev in report.evaluations]
        best = max(values)
        cells = [
            f"[green]{fixed(v)}[/]" if len(values) > 1 and v == best else fixed(v) for v in values
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
        title=cell(f"by {breakdown.side} {breakdown.column}{where}"),
        caption="R@k: recall@k",
        box=box.SIMPLE_HEAD,
    )
    table.add_column(cell(breakdown.column), style="bold", overflow="fold")
    table.add_column("queries", justify="right")
    for name in names:  # R@k, not Recall@k: a breakdown must fit 80 columns
        table.add_column(name.replace("recall@", "R@").replace("ndcg", "nDCG"), justify="right")
    for group in breakdown.groups:
        cells = [fixed(group[name]) for name in names]
        table.add_row(cell(str(group["value"])), str(group["queries"]), *cells)
    return table


def _ann_tables(console: Any, ev: IndexEvaluation, names: list[str]) -> None:
    from rich.table import Table

    ann = ev.ann
    assert ann is not None
    recalls = [f"recall@{k}" for k in ann.ks]
    table = Table(
        title=cell(f"HNSW against exact search, {ann.chunks} chunks ({display_path(ev.index)})"),
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
        compare.add_row(
            metric_label(name), fixed(hnsw), fixed(exact), fixed(hnsw - exact, sign=True)
        )
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
        where = escape_text(display_path(ev.index))
        if ev.judged_not_in_index:
            examples = escape_text(", ".join(ev.unmatched_examples))
            err.write(
                f"bienc: warning: {where}: {ev.judged_not_in_index} relevant "
                f"judgements match no document (e.g. {examples}); they count as not retrieved\n"
            )
        if ev.ambiguous_ids:
            err.write(
                f"bienc: warning: {where}: {ev.ambiguous_ids} judged ids match "
                "several documents; write them as paths relative to the indexed folder\n"
            )


def per_query_format(path: str) -> str | None:
    """The per-query file's format, from its extension; None for an extension it has not."""
    return PER_QUERY_FORMATS.get(os.path.splitext(path)[1].lower())


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
        rows = [
            {k: json.dumps(v, ensure_ascii=False) if isinstance(v, list) else v
             for k, v in record.items()}
            for record in records
        ]  # fmt: skip
        if fmt == "csv":
            writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
            return
        for values in [fields, *([row[f] for f in fields] for row in rows)]:  # escaped as any tsv
            cells = ("" if v is None else escape_text(str(v)) for v in values)
            out.write("\t".join(cells) + "\n")
