"""`bienc query`: the documents closest in meaning to a query."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from bienc_cli.cli.options import MAX_EF, IndexOption, NullOption, handle_errors
from bienc_cli.errors import ExitStatus, UsageError


@handle_errors
def query(
    text: Annotated[
        str | None,
        typer.Argument(
            help="The query; - reads one query per line from stdin.", show_default=False
        ),
    ] = None,
    index_dir: IndexOption = None,
    k: Annotated[
        int, typer.Option("-k", "--top", min=1, help="How many results (per query).")
    ] = 10,
    chunks: Annotated[
        bool,
        typer.Option(
            "--chunks", help="Return chunk hits instead of the best chunk of each document."
        ),
    ] = False,
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format",
            "-f",
            help="table | json | jsonl | tsv | csv | paths. "
            "[default: table on a terminal, tsv otherwise]",
            show_default=False,
        ),
    ] = None,
    null: NullOption = False,
    min_score: Annotated[
        float | None, typer.Option("--min-score", help="Drop hits with a lower cosine similarity.")
    ] = None,
    path: Annotated[
        list[str] | None,
        typer.Option("--path", help="Only sources whose path matches this glob (repeatable)."),
    ] = None,
    where: Annotated[
        list[str] | None,
        typer.Option(
            "--where", help="Only table rows whose COLUMN=VALUE (repeatable; all must hold)."
        ),
    ] = None,
    ef: Annotated[
        int | None,
        typer.Option(
            "--ef", min=1, max=MAX_EF, help="Search breadth: higher is slower, with better recall."
        ),
    ] = None,
    backend: Annotated[
        str | None,
        typer.Option(
            "--backend",
            help="Query encoder: onnx, onnx-int8 or sentence-transformers. "
            "[default: what the index recorded]",
        ),
    ] = None,
) -> None:
    """Find the documents closest in meaning to a query.

    Scores are cosine similarities between the query's and the chunks' vectors (-1 to 1,
    higher is closer); a document scores as its best chunk. Exit code 0 if anything was
    found, 1 if nothing was, as grep does.
    """
    from bienc_cli.query.search import QueryOptions, parse_where, search
    from bienc_cli.store import layout
    from bienc_cli.ui import output as ui

    if text is None:
        raise UsageError("give a query, or - to read queries from stdin")
    queries = [line.strip() for line in sys.stdin if line.strip()] if text == "-" else [text]
    if not queries or not all(q.strip() for q in queries):
        raise UsageError("the query is empty")
    if null and fmt not in (None, "paths"):
        raise UsageError(f"-0 separates the paths of -f paths; it does not go with -f {fmt}")
    fmt = fmt or ("paths" if null else "table" if sys.stdout.isatty() else "tsv")
    if fmt not in ui.HIT_FORMATS:
        raise UsageError(f"unknown --format {fmt!r}; choose one of {', '.join(ui.HIT_FORMATS)}")
    options = QueryOptions(
        k=k,
        chunks=chunks,
        min_score=min_score,
        path_globs=tuple(path or ()),
        where=parse_where(where or ()),
        ef=ef,
        backend=backend,
    )
    results = search(layout.index_path(str(index_dir) if index_dir else None), queries, options)
    ui.write_hits(results, fmt, sys.stdout, null=null)
    sys.stdout.flush()
    found = any(results)
    raise typer.Exit(int(ExitStatus.OK if found else ExitStatus.NO_RESULTS))
