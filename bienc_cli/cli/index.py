"""`bienc index`: read sources, encode what changed, publish a new generation."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from bienc_cli.cli.options import (
    MAX_EF,
    UNSET_SOURCE_FLAGS,
    IndexOption,
    NullOption,
    SourceFlags,
    error,
    handle_errors,
    index_root,
    not_nan,
    split_stdin,
    with_source_options,
)
from bienc_cli.errors import UsageError


@handle_errors
@with_source_options
def index(
    sources: Annotated[
        list[str] | None,
        typer.Argument(
            help="Folders, files or glob patterns; - reads paths from stdin. "
            "Omitted: re-index the sources the index remembers.",
            show_default=False,
        ),
    ] = None,
    index_dir: IndexOption = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            help="Model folder or sentence-transformers id. [default: $BIENC_MODEL, "
            "else the index's model, else all-MiniLM-L6-v2]",
            show_default=False,
        ),
    ] = None,
    backend: Annotated[
        str | None,
        typer.Option(
            "--backend",
            help="Encoder: auto (ONNX Runtime where the model exports, else sentence-transformers), "
            "onnx, onnx-int8 (about 1.5x faster, vectors within cosine ~0.99 of fp32; "
            "switching to or from it needs --rebuild), or sentence-transformers. "
            "[default: the index's, else auto]",
        ),
    ] = None,
    source: SourceFlags = UNSET_SOURCE_FLAGS,
    no_text_column: Annotated[
        bool, typer.Option("--no-text-column", help="Forget a remembered --text-column.")
    ] = False,
    no_id_column: Annotated[
        bool, typer.Option("--no-id-column", help="Forget a remembered --id-column.")
    ] = False,
    no_include: Annotated[
        bool, typer.Option("--no-include", help="Forget the remembered --include patterns.")
    ] = False,
    no_exclude: Annotated[
        bool, typer.Option("--no-exclude", help="Forget the remembered --exclude patterns.")
    ] = False,
    null: NullOption = False,
    overlap: Annotated[
        int | None,
        typer.Option(
            "--overlap",
            min=0,
            help="Tokens shared by consecutive chunks. [default: the index's, else 32]",
        ),
    ] = None,
    ef: Annotated[
        int | None,
        typer.Option(
            "--ef",
            min=1,
            max=MAX_EF,
            help="Default search breadth stored with the index. [default: the index's, else 128]",
        ),
    ] = None,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="Chunks per encoder batch.")
    ] = 32,
    rebuild: Annotated[
        bool,
        typer.Option(
            "--rebuild",
            help="Start over: re-read and re-encode everything, with the index's model and "
            "options unless given (what cannot be read keeps its content).",
        ),
    ] = False,
    wait: Annotated[
        float | None,
        typer.Option(
            "--wait",
            min=0,
            callback=not_nan,
            help="Wait at most this many seconds for another writer. [default: forever]",
        ),
    ] = None,
    no_wait: Annotated[
        bool, typer.Option("--no-wait", help="Exit at once (code 7) if another writer is busy.")
    ] = False,
    json_report: Annotated[
        bool, typer.Option("--json", help="Print the run report as JSON on stdout.")
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No summary on stderr (errors still shown).")
    ] = False,
) -> None:
    """Index folders, files and tables (Parquet, JSONL, CSV); re-runs are incremental.

    The index remembers its sources and reading options: a plain `bienc index` (and
    --rebuild) reads them the same way. An option given replaces its remembered value;
    --no-include, --no-exclude, --no-text-column, --no-id-column, --no-hidden, --ignore and
    --no-follow-symlinks set one back to its default. `bienc info` shows them.
    """
    from bienc_cli.indexing.request import IndexRequest, IndexSettings
    from bienc_cli.indexing.run import run_index
    from bienc_cli.ui import output as ui

    if null and "-" not in (sources or []):
        raise UsageError("-0 reads NUL-separated paths from stdin: give - as a SOURCE")
    sources, stdin_paths = split_stdin(sources, null=null)
    options = source.options(
        clear=[
            name
            for name, given in (
                ("include", no_include),
                ("exclude", no_exclude),
                ("text_columns", no_text_column),
                ("id_column", no_id_column),
            )
            if given
        ],
    )
    request = IndexRequest(
        root=index_root(index_dir),
        sources=sources,
        stdin_paths=stdin_paths,
        model=model,
        options=options,
        settings=IndexSettings(batch_size=batch_size),
        backend=backend,
        overlap=overlap,
        ef=ef,
        rebuild=rebuild,
        wait=0 if no_wait else wait,
    )
    with ui.progress_bar(sys.stderr.isatty() and not quiet) as progress:
        report = run_index(request, progress=progress)
    if json_report:
        sys.stdout.write(json.dumps(report.to_dict(), ensure_ascii=False, indent=2) + "\n")
    if not quiet:
        ui.write_report(report, sys.stderr)
    elif report.errors:
        for item in report.errors:
            error(f"{item.path}{'#' + item.row_id if item.row_id else ''}: {item.reason}")
    raise typer.Exit(int(report.exit_status))
