"""The command line: parse options, call one library function, render what it returns.

Library errors become a one-line message and an exit code here, and only here.
Module-level imports stay light: `bienc --help` must not pay for numpy, pyarrow or torch.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import logging
import math
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from typer.core import TyperGroup

from bienc_cli import __version__
from bienc_cli.errors import BiencError, ExitStatus, UsageError

# The click that typer raises from: typer 0.27 bundles its own (typer._click), older ones use
# the click package.
_click_errors = sys.modules[typer.BadParameter.__module__]


class _OneLineUsageError(_click_errors.UsageError):  # type: ignore[name-defined,misc]
    """click's usage error, shown as bienc shows every error: one line on stderr."""

    def show(self, file: Any = None) -> None:
        message = self.format_message().rstrip(".")
        hint = f" (see {self.ctx.command_path} --help)" if self.ctx is not None else ""
        _error(message[:1].lower() + message[1:] + hint)


@contextlib.contextmanager
def _one_line_usage_errors() -> Iterator[None]:
    try:
        yield
    except (_OneLineUsageError, _NoArgsIsHelp):
        raise  # the help text itself (`bienc` alone) stays as it is
    except _click_errors.UsageError as exc:
        raise _OneLineUsageError(exc.format_message(), exc.ctx) from None


_NoArgsIsHelp = getattr(_click_errors, "NoArgsIsHelpError", _OneLineUsageError)


class _Group(TyperGroup):
    """The bienc group: a bad option or argument (out of range, unknown, missing) is one
    line on stderr, `bienc: error: ...`, like the library's errors, not click's usage block."""

    def make_context(self, info_name: Any, args: Any, parent: Any = None, **extra: Any) -> Any:
        with _one_line_usage_errors():
            return super().make_context(info_name, args, parent, **extra)

    def invoke(self, ctx: Any) -> Any:
        with _one_line_usage_errors():  # the command's own options are parsed in here
            return super().invoke(ctx)


app = typer.Typer(
    cls=_Group,
    name="bienc",
    help="Search, deduplicate and cluster local documents by meaning, with a bi-encoder.",
    no_args_is_help=True,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

F = TypeVar("F", bound=Callable[..., Any])

# The largest --ef: hnswlib takes a C integer (a larger Python int is a TypeError), and an ef
# beyond the number of chunks searches no wider.
MAX_EF = 2**31 - 1


def not_nan(value: float | None) -> float | None:
    """A float option's callback: click's ranges let NaN through (every comparison is false)."""
    if value is not None and math.isnan(value):
        raise typer.BadParameter("not a number")
    return value


IndexOption = Annotated[
    Path | None,
    typer.Option(
        "--index",
        "-i",
        help="Index folder. [default: $BIENC_INDEX, else ./.bienc]",
        show_default=False,
    ),
]
NullOption = Annotated[
    bool,
    typer.Option(
        "--null", "-0", help="NUL-separated paths (stdin for index, output for query: -f paths)."
    ),
]
# Source options shared by index, dedup and cluster (the same reading rules everywhere).
TextColumnOption = Annotated[
    list[str] | None,
    typer.Option(
        "--text-column", help="Table column(s) holding the text, joined in order (repeatable)."
    ),
]
IdColumnOption = Annotated[
    str | None, typer.Option("--id-column", help="Table column holding the row id.")
]
IncludeOption = Annotated[
    list[str] | None,
    typer.Option("--include", help="Only read files matching this glob (repeatable)."),
]
ExcludeOption = Annotated[
    list[str] | None,
    typer.Option("--exclude", help="Skip files and folders matching this glob (repeatable)."),
]


def _handle_errors(command: F) -> F:
    """Turn library errors into one line on stderr and a documented exit code."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except BiencError as exc:
            _error(str(exc))
            raise typer.Exit(int(exc.exit_status)) from None
        except KeyboardInterrupt:
            _error("interrupted; the index is unchanged")
            raise typer.Exit(int(ExitStatus.INTERRUPTED)) from None
        except BrokenPipeError:
            # The reader went away (`bienc query ... | head -1`): stop quietly, like grep.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            raise typer.Exit(int(ExitStatus.OK)) from None

    return wrapper  # type: ignore[return-value]


def _error(message: str) -> None:
    from bienc_cli.ui.output import escape_text

    sys.stderr.write(f"bienc: error: {escape_text(message)}\n")  # one line, whatever it names


def _version(value: bool) -> None:
    if value:
        typer.echo(f"bienc {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
    verbose: Annotated[
        int, typer.Option("--verbose", "-v", count=True, help="Log more (-vv: debug).")
    ] = 0,
) -> None:
    """Search, deduplicate and cluster local documents by meaning, with a bi-encoder."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="bienc: %(levelname)s: %(name)s: %(message)s")


def parse_size(text: str) -> int:
    """'20M' -> 20971520. Accepts plain bytes and K/M/G suffixes (powers of 1024)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmMgG]?)[iI]?[bB]?\s*", text)
    if not match:
        raise UsageError(f"--max-file-size {text!r}: not a size; use e.g. 500K, 20M or 1G")
    number, unit = float(match.group(1)), match.group(2).upper()
    size = int(number * {"": 1, "K": 2**10, "M": 2**20, "G": 2**30}[unit])
    if size < 1:  # not "no limit", as 0 is to some tools: it would skip every file
        raise UsageError(f"--max-file-size {text!r}: give at least 1 byte, e.g. 500K, 20M or 1G")
    return size


def split_stdin(sources: list[str] | None, *, null: bool) -> tuple[list[str], list[str]]:
    """SOURCE arguments, and the paths read from stdin when one of them is `-`."""
    from bienc_cli.inputs.sources import read_path_list

    sources = list(sources or [])
    if "-" not in sources:
        return sources, []
    sources.remove("-")
    return sources, read_path_list(sys.stdin.buffer, null_separated=null)


# Options a --no-... flag sets back to their default, with the flag that sets them.
_CLEARABLE = {
    "include": ((), "--include"),
    "exclude": ((), "--exclude"),
    "text_columns": ((), "--text-column"),
    "id_column": (None, "--id-column"),
}


def source_options(
    *,
    include: list[str] | None = None,
    exclude: list[str] | None = None,
    hidden: bool | None = None,
    no_ignore: bool | None = None,
    follow: bool | None = None,
    max_file_size: str | None = None,
    text_column: list[str] | None = None,
    id_column: str | None = None,
    clear: Sequence[str] = (),
) -> dict[str, Any]:
    """The reading options the user set, in indexing's terms; unset ones are left out so that
    an index's remembered values (or the defaults) hold. ``clear``: options (keys of
    _CLEARABLE) given as --no-include and the like, set back to their defaults."""
    options: dict[str, Any] = {
        "include": tuple(include) if include else None,
        "exclude": tuple(exclude) if exclude else None,
        "hidden": hidden,
        "use_ignore_files": None if no_ignore is None else not no_ignore,
        "follow_symlinks": follow,
        "max_file_size": parse_size(max_file_size) if max_file_size else None,
        "text_columns": tuple(text_column) if text_column else None,
        "id_column": id_column,
    }
    given = {k: v for k, v in options.items() if v is not None}
    for name in clear:
        default, flag = _CLEARABLE[name]
        if name in given:
            raise UsageError(f"{flag} and --no-{flag[2:]} contradict each other: give one")
        given[name] = default
    return given


@app.command()
@_handle_errors
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
    text_column: TextColumnOption = None,
    no_text_column: Annotated[
        bool, typer.Option("--no-text-column", help="Forget a remembered --text-column.")
    ] = False,
    id_column: IdColumnOption = None,
    no_id_column: Annotated[
        bool, typer.Option("--no-id-column", help="Forget a remembered --id-column.")
    ] = False,
    include: IncludeOption = None,
    no_include: Annotated[
        bool, typer.Option("--no-include", help="Forget the remembered --include patterns.")
    ] = False,
    exclude: ExcludeOption = None,
    no_exclude: Annotated[
        bool, typer.Option("--no-exclude", help="Forget the remembered --exclude patterns.")
    ] = False,
    hidden: Annotated[
        bool | None,
        typer.Option("--hidden/--no-hidden", help="Index hidden files and folders too, or not."),
    ] = None,
    no_ignore: Annotated[
        bool | None,
        typer.Option(
            "--no-ignore/--ignore", help="Do not honour .gitignore and .biencignore, or do."
        ),
    ] = None,
    follow: Annotated[
        bool | None,
        typer.Option(
            "--follow-symlinks/--no-follow-symlinks",
            "-L",
            help="Follow symlinks found while walking, or not.",
        ),
    ] = None,
    max_file_size: Annotated[
        str | None,
        typer.Option("--max-file-size", help="Skip larger files (tables exempt). [default: 20M]"),
    ] = None,
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
    from bienc_cli.indexing.run import IndexRequest, IndexSettings, run_index
    from bienc_cli.store import generations as store
    from bienc_cli.ui import output as ui

    if null and "-" not in (sources or []):
        raise UsageError("-0 reads NUL-separated paths from stdin: give - as a SOURCE")
    sources, stdin_paths = split_stdin(sources, null=null)
    options = source_options(
        include=include,
        exclude=exclude,
        hidden=hidden,
        no_ignore=no_ignore,
        follow=follow,
        max_file_size=max_file_size,
        text_column=text_column,
        id_column=id_column,
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
        root=store.index_path(str(index_dir) if index_dir else None),
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
            _error(f"{item.path}{'#' + item.row_id if item.row_id else ''}: {item.reason}")
    raise typer.Exit(int(report.exit_status))


@app.command()
@_handle_errors
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
    from bienc_cli.store import generations as store
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
    results = search(store.index_path(str(index_dir) if index_dir else None), queries, options)
    ui.write_hits(results, fmt, sys.stdout, null=null)
    sys.stdout.flush()
    found = any(results)
    raise typer.Exit(int(ExitStatus.OK if found else ExitStatus.NO_RESULTS))


@app.command()
@_handle_errors
def info(
    index_dir: IndexOption = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    no_stale: Annotated[
        bool, typer.Option("--no-stale", help="Skip the check of which sources changed (faster).")
    ] = False,
) -> None:
    """Describe an index: model, counts, size, dates, and which sources changed since."""
    from bienc_cli.indexing.info import index_info
    from bienc_cli.store import generations as store
    from bienc_cli.ui import output as ui

    data = index_info(store.index_path(str(index_dir) if index_dir else None), stale=not no_stale)
    if json_output:
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
    else:
        ui.write_info(data, sys.stdout)


# The eval, cluster and dedup commands live in their own modules, which import `app` and the
# shared pieces above; importing them here, once those exist, registers their commands. It sits
# above `verify` so that `bienc --help` keeps listing the commands in the same order.
from bienc_cli.cli import eval as cli_eval  # noqa: E402, F401, I001
from bienc_cli.cli import cluster as cli_cluster  # noqa: E402, F401, I001
from bienc_cli.cli import dedup as cli_dedup  # noqa: E402, F401, I001


@app.command()
@_handle_errors
def verify(
    index_dir: IndexOption = None,
    repair: Annotated[
        bool,
        typer.Option(
            "--repair",
            help="Fix what is inconsistent: back to the newest good generation, then re-index.",
        ),
    ] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    wait: Annotated[
        float | None,
        typer.Option(
            "--wait",
            min=0,
            callback=not_nan,
            help="With --repair: wait at most this long for another writer.",
        ),
    ] = None,
) -> None:
    """Check an index against its manifest and sidecar: checksums, labels, counts, model.

    Exit code 0 when everything holds, 4 when something does not (after --repair: when the
    repair could not make it hold).
    """
    from bienc_cli.indexing.verify import repair_index, verify_index
    from bienc_cli.store import generations as store
    from bienc_cli.ui.output import escape_text

    root = store.index_path(str(index_dir) if index_dir else None)
    result = repair_index(root, wait=wait) if repair else verify_index(root)
    if json_output:
        sys.stdout.write(json.dumps(result.to_dict(), indent=2) + "\n")
    else:
        for check in result.checks:
            mark = "ok  " if check.ok else "FAIL"
            detail = ": " + escape_text(check.detail) if check.detail else ""
            sys.stdout.write(f"{mark} {check.name}{detail}\n")
        if result.repaired:
            sys.stdout.write(f"repair: {escape_text(result.repaired)}\n")
    raise typer.Exit(int(ExitStatus.OK if result.ok else ExitStatus.NO_INDEX))


def main() -> None:
    """The `bienc` entry point.

    typer turns every registered command's signature into click options before it runs
    any of them (~25 ms here, a tenth of a cold query), so a run that names a command
    builds an app holding only that one; anything else (no command, top-level --help, an
    unknown name) goes to the whole app.
    """
    name = _command_name(sys.argv[1:])
    chosen = [c for c in app.registered_commands if _registered_name(c) == name]
    if not chosen:
        app()
        return
    single = copy.copy(app)  # the same settings and callback (--verbose, --version)
    single.registered_commands = chosen
    if name not in _READ_ONLY:
        single()
        return
    try:
        single()
    except SystemExit as exit:
        # Nothing left to clean up: skip the interpreter's teardown (freeing the model
        # session, the graph and every module: ~40 ms of a ~300 ms cold query here).
        code = exit.code if isinstance(exit.code, int) else 0 if exit.code is None else 1
        if isinstance(exit.code, str):
            sys.stderr.write(exit.code + "\n")
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except OSError:  # the reader went away (`| head`), as _handle_errors allows
                pass
        _leave(code)


def _leave(code: int) -> None:
    """Exit at once, without teardown (tests replace it: it would end pytest too)."""
    os._exit(code)


# Commands that write nothing but stdout and stderr, so that they may exit without teardown.
_READ_ONLY = {"query"}


def _command_name(args: list[str]) -> str | None:
    """The command a command line names: its first word that is not an option."""
    for arg in args:
        if arg == "--" or arg in ("-h", "--help"):
            return None
        if not arg.startswith("-"):
            return arg
    return None


def _registered_name(info: Any) -> str:
    return info.name or info.callback.__name__.replace("_", "-")
