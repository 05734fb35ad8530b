"""`bienc eval`: score retrieval on judged queries (nDCG, MRR, MAP, recall).

Listed in bienc_cli.cli.main's table of commands; the library work is in
bienc_cli.evaluation.evaluate, the rendering in bienc_cli.ui.eval.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from bienc_cli.cli.options import MAX_EF, choose_format, handle_errors, index_root
from bienc_cli.errors import StorageError, UsageError


@handle_errors
def eval_command(
    index_dirs: Annotated[
        list[Path] | None,
        typer.Option(
            "--index",
            "-i",
            help="Index folder; repeat to compare indexes side by side. "
            "[default: $BIENC_INDEX, else ./.bienc]",
            show_default=False,
        ),
    ] = None,
    queries: Annotated[
        Path | None,
        typer.Option(
            "--queries",
            help="Queries: BEIR queries.jsonl (_id, text) or a CSV/TSV/Parquet/JSONL table.",
            show_default=False,
        ),
    ] = None,
    qrels: Annotated[
        Path | None,
        typer.Option(
            "--qrels",
            help="Judgements: BEIR/TREC qrels (query-id corpus-id score), or a table of "
            "query (text or id) and relevant id.",
            show_default=False,
        ),
    ] = None,
    cutoffs: Annotated[
        str,
        typer.Option(
            "-k", "--cutoffs", help="Recall cut-offs, comma-separated; MAP is cut at the largest."
        ),
    ] = "1,10,50,100",
    by: Annotated[
        list[str] | None,
        typer.Option(
            "--by",
            help="Break figures down by a query column, a document metadata column, or kind, "
            "path, folder; prefix query: or doc: to choose (repeatable).",
        ),
    ] = None,
    ann: Annotated[
        bool,
        typer.Option(
            "--ann", help="Also search exactly: HNSW recall at several ef, exact metrics."
        ),
    ] = False,
    target_recall: Annotated[
        float, typer.Option("--target-recall", help="ANN recall the stored ef should reach.")
    ] = 0.99,
    ef: Annotated[
        int | None,
        typer.Option(
            "--ef", min=1, max=MAX_EF, help="Search breadth. [default: the index's stored ef]"
        ),
    ] = None,
    per_query: Annotated[
        Path | None,
        typer.Option(
            "--per-query",
            help="Write each query's figures, first relevant rank and misses here "
            "(.jsonl, .json, .csv or .tsv).",
            show_default=False,
        ),
    ] = None,
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format",
            "-f",
            help="table | json | tsv. [default: table on a terminal, tsv otherwise]",
            show_default=False,
        ),
    ] = None,
    query_id_column: Annotated[
        str | None, typer.Option("--query-id-column", help="Column holding the query id.")
    ] = None,
    query_column: Annotated[
        str | None, typer.Option("--query-column", help="Column holding the query text.")
    ] = None,
    doc_column: Annotated[
        str | None, typer.Option("--doc-column", help="Column holding the relevant document id.")
    ] = None,
    score_column: Annotated[
        str | None,
        typer.Option("--score-column", help="Column holding the grade (0 = not relevant)."),
    ] = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No notes on stderr (errors still shown).")
    ] = False,
) -> None:
    """Measure retrieval quality on your own judged queries: nDCG@10, MRR@10, MAP, recall@k.

    Runs every query through the same search as `bienc query` and scores the documents it
    returns against the judgements, as MTEB/pytrec_eval do. Judged ids are matched to
    table row ids, else to file paths (relative to the indexed folder, or file names).
    """
    from bienc_cli.evaluation.evaluate import evaluate
    from bienc_cli.evaluation.judgements import Columns, load_eval_set
    from bienc_cli.evaluation.records import EvalOptions
    from bienc_cli.ui import eval as ui_eval

    fmt = choose_format(fmt, ui_eval.EVAL_FORMATS)
    try:
        ks = tuple(int(part) for part in cutoffs.split(",") if part.strip())
    except ValueError:
        raise UsageError(
            f"-k expects comma-separated numbers, e.g. 1,10,100; got {cutoffs!r}"
        ) from None
    per_query_fmt = ui_eval.per_query_format(str(per_query)) if per_query else None
    if per_query is not None and per_query_fmt is None:
        raise UsageError(
            f"--per-query {per_query}: use a file ending in {', '.join(ui_eval.PER_QUERY_FORMATS)}"
        )
    eval_set = load_eval_set(
        queries,
        qrels,
        Columns(
            query_id=query_id_column,
            query_text=query_column,
            doc_id=doc_column,
            score=score_column,
        ),
    )
    roots = [index_root(d) for d in index_dirs] if index_dirs else [index_root(None)]
    options = EvalOptions(ks=ks, by=tuple(by or ()), ann=ann, target_recall=target_recall, ef=ef)
    report = evaluate(roots, eval_set, options)
    if not quiet:
        ui_eval.write_eval_notes(report, sys.stderr)
    if per_query is not None:
        try:
            with open(per_query, "w", encoding="utf-8", newline="") as fh:
                ui_eval.write_per_query(report, per_query_fmt, fh)
        except OSError as exc:
            raise StorageError(f"cannot write {per_query}: {exc.strerror or exc}") from exc
    ui_eval.write_eval(report, fmt, sys.stdout)
