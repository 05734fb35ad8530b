"""The command line: parse options, call one library function, render what it returns.

Library errors become a one-line message and an exit code here, and only here.
Module-level imports stay light: `bienc --help` must not pay for numpy, pyarrow or torch.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from bienc_cli import __version__
from bienc_cli.errors import BiencError, ExitStatus, UsageError

app = typer.Typer(
    name="bienc",
    help="Search, deduplicate and cluster local documents by meaning, with a bi-encoder.",
    no_args_is_help=True,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
)

F = TypeVar("F", bound=Callable[..., Any])

IndexOption = Annotated[
    Path | None,
    typer.Option(
        "--index",
        "-i",
        help="Index folder. \\[default: $BIENC_INDEX, else ./.bienc]",
        show_default=False,
    ),
]
NullOption = Annotated[
    bool,
    typer.Option("--null", "-0", help="NUL-separated paths (stdin for index, output for query)."),
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
    sys.stderr.write(f"bienc: error: {message}\n")


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
        raise UsageError(f"cannot read size {text!r}; use e.g. 500K, 20M or 1G")
    number, unit = float(match.group(1)), match.group(2).upper()
    return int(number * {"": 1, "K": 2**10, "M": 2**20, "G": 2**30}[unit])


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
            help="Model folder or sentence-transformers id. \\[default: $BIENC_MODEL, "
            "else the index's model, else all-MiniLM-L6-v2]",
            show_default=False,
        ),
    ] = None,
    backend: Annotated[
        str | None,
        typer.Option(
            "--backend",
            help="Encoder: auto (ONNX Runtime where the model exports, else sentence-transformers), "
            "onnx, or sentence-transformers. \\[default: the index's, else auto]",
        ),
    ] = None,
    text_column: Annotated[
        list[str] | None,
        typer.Option(
            "--text-column", help="Table column(s) holding the text, joined in order (repeatable)."
        ),
    ] = None,
    id_column: Annotated[
        str | None, typer.Option("--id-column", help="Table column holding the row id.")
    ] = None,
    include: Annotated[
        list[str] | None,
        typer.Option("--include", help="Only index files matching this glob (repeatable)."),
    ] = None,
    exclude: Annotated[
        list[str] | None,
        typer.Option("--exclude", help="Skip files and folders matching this glob (repeatable)."),
    ] = None,
    hidden: Annotated[
        bool | None, typer.Option("--hidden", help="Index hidden files and folders too.")
    ] = None,
    no_ignore: Annotated[
        bool | None, typer.Option("--no-ignore", help="Do not honour .gitignore and .biencignore.")
    ] = None,
    follow: Annotated[
        bool | None, typer.Option("--follow-symlinks", "-L", help="Follow symlinked folders.")
    ] = None,
    max_file_size: Annotated[
        str | None,
        typer.Option("--max-file-size", help="Skip larger files (tables exempt). \\[default: 20M]"),
    ] = None,
    null: NullOption = False,
    overlap: Annotated[
        int | None,
        typer.Option(
            "--overlap", min=0, help="Tokens shared by consecutive chunks. \\[default: the index's, else 32]"
        ),
    ] = None,
    ef: Annotated[
        int | None,
        typer.Option(
            "--ef", min=1, help="Default search breadth stored with the index. \\[default: the index's, else 128]"
        ),
    ] = None,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="Chunks per encoder batch.")
    ] = 32,
    rebuild: Annotated[
        bool, typer.Option("--rebuild", help="Start over: re-read and re-encode everything.")
    ] = False,
    wait: Annotated[
        float | None,
        typer.Option(
            "--wait",
            min=0,
            help="Wait at most this many seconds for another writer. \\[default: forever]",
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
    """Index folders, files and tables (Parquet, JSONL, CSV); re-runs are incremental."""
    from bienc_cli import store, ui
    from bienc_cli.indexing import IndexRequest, IndexSettings, run_index
    from bienc_cli.sources import read_path_list

    sources = list(sources or [])
    stdin_paths: list[str] = []
    if "-" in sources:
        sources.remove("-")
        stdin_paths = read_path_list(sys.stdin.buffer, null_separated=null)
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
    request = IndexRequest(
        root=store.index_path(str(index_dir) if index_dir else None),
        sources=sources,
        stdin_paths=stdin_paths,
        model=model,
        options={k: v for k, v in options.items() if v is not None},
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
            "\\[default: table on a terminal, tsv otherwise]",
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
        typer.Option("--ef", min=1, help="Search breadth: higher is slower, with better recall."),
    ] = None,
    backend: Annotated[
        str | None,
        typer.Option(
            "--backend",
            help="Query encoder: onnx or sentence-transformers. \\[default: what the index recorded]",
        ),
    ] = None,
) -> None:
    """Find the documents closest in meaning to a query.

    Scores are cosine similarities between the query's and the chunks' vectors (-1 to 1,
    higher is closer); a document scores as its best chunk. Exit code 0 if anything was
    found, 1 if nothing was, as grep does.
    """
    from bienc_cli import store, ui
    from bienc_cli.query import QueryOptions, parse_where, search

    if text is None:
        raise UsageError("give a query, or - to read queries from stdin")
    queries = [line.strip() for line in sys.stdin if line.strip()] if text == "-" else [text]
    if not queries or not all(q.strip() for q in queries):
        raise UsageError("the query is empty")
    fmt = fmt or ("table" if sys.stdout.isatty() else "tsv")
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
    from bienc_cli import store, ui
    from bienc_cli.info import index_info

    data = index_info(store.index_path(str(index_dir) if index_dir else None), stale=not no_stale)
    if json_output:
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
    else:
        ui.write_info(data, sys.stdout)


@app.command("eval")
@_handle_errors
def eval_command(
    index_dirs: Annotated[
        list[Path] | None,
        typer.Option(
            "--index",
            "-i",
            help="Index folder; repeat to compare indexes side by side. "
            "\\[default: $BIENC_INDEX, else ./.bienc]",
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
        typer.Option("--ef", min=1, help="Search breadth. \\[default: the index's stored ef]"),
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
            help="table | json | tsv. \\[default: table on a terminal, tsv otherwise]",
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
    from bienc_cli import store, ui
    from bienc_cli.evaluation import Columns, EvalOptions, evaluate, load_eval_set

    fmt = fmt or ("table" if sys.stdout.isatty() else "tsv")
    if fmt not in ui.EVAL_FORMATS:
        raise UsageError(f"unknown --format {fmt!r}; choose one of {', '.join(ui.EVAL_FORMATS)}")
    try:
        ks = tuple(int(part) for part in cutoffs.split(",") if part.strip())
    except ValueError:
        raise UsageError(
            f"-k expects comma-separated numbers, e.g. 1,10,100; got {cutoffs!r}"
        ) from None
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
    roots = (
        [store.index_path(str(d)) for d in index_dirs] if index_dirs else [store.index_path(None)]
    )
    options = EvalOptions(ks=ks, by=tuple(by or ()), ann=ann, target_recall=target_recall, ef=ef)
    report = evaluate(roots, eval_set, options)
    if not quiet:
        ui.write_eval_notes(report, sys.stderr)
    if per_query is not None:
        try:
            with open(per_query, "w", encoding="utf-8", newline="") as fh:
                ui.write_per_query(report, ui.per_query_format(str(per_query)), fh)
        except OSError as exc:
            raise UsageError(f"cannot write {per_query}: {exc.strerror}") from exc
    ui.write_eval(report, fmt, sys.stdout)


@app.command()
@_handle_errors
def cluster(
    sources: Annotated[
        list[str] | None,
        typer.Argument(
            help="Folders, files or glob patterns to read and encode (in a temporary index); "
            "- reads paths from stdin. Omitted: the documents of --index.",
            show_default=False,
        ),
    ] = None,
    index_dir: IndexOption = None,
    method: Annotated[
        str, typer.Option("--method", "-M", help="kmeans | hdbscan | agglomerative.")
    ] = "kmeans",
    n_clusters: Annotated[
        int | None,
        typer.Option(
            "-n",
            "--clusters",
            min=1,
            help="Number of clusters (kmeans, agglomerative). \\[default: the K from 2 to "
            "min(20, sqrt(documents)) with the best silhouette]",
            show_default=False,
        ),
    ] = None,
    max_clusters: Annotated[
        int | None,
        typer.Option(
            "--max-clusters",
            help="Largest K the automatic choice tries (kmeans, agglomerative). "
            "\\[default: min(20, sqrt(documents))]",
            show_default=False,
        ),
    ] = None,
    threshold: Annotated[
        float | None,
        typer.Option(
            "--threshold",
            help="agglomerative: cut where groups are farther apart than this cosine distance "
            "(0-2; with average linkage, the mean distance between their documents). "
            "\\[default: K by silhouette, as for kmeans]",
            show_default=False,
        ),
    ] = None,
    linkage: Annotated[
        str,
        typer.Option("--linkage", help="agglomerative: average | complete | single | ward."),
    ] = "average",
    min_cluster_size: Annotated[
        int | None,
        typer.Option(
            "--min-cluster-size",
            help="hdbscan: smallest group that counts as a cluster. \\[default: max(5, 1% of "
            "documents)]",
            show_default=False,
        ),
    ] = None,
    min_samples: Annotated[
        int | None,
        typer.Option(
            "--min-samples",
            help="hdbscan: neighbours a document needs to be in a dense region; lower leaves "
            "fewer outliers. \\[default: min(--min-cluster-size, 10)]",
            show_default=False,
        ),
    ] = None,
    attach_outliers: Annotated[
        bool,
        typer.Option("--attach-outliers", help="hdbscan: put each outlier in the nearest cluster."),
    ] = False,
    seed: Annotated[int, typer.Option("--seed", help="Random seed: same seed, same clusters.")] = 0,
    keywords: Annotated[int, typer.Option("--keywords", min=1, help="Keywords per cluster.")] = 5,
    representatives: Annotated[
        int,
        typer.Option("--representatives", min=0, help="Documents nearest the centre, per cluster."),
    ] = 3,
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format",
            "-f",
            help="table | json | jsonl | csv | tsv | parquet (with --output). \\[default: from "
            "--output's suffix, else table on a terminal, tsv otherwise]",
            show_default=False,
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Write the results to this file (.json, .jsonl, .csv, .tsv, .parquet) "
            "instead of stdout.",
            show_default=False,
        ),
    ] = None,
    plot: Annotated[
        list[Path] | None,
        typer.Option(
            "--plot",
            help="Draw a map of the documents coloured by cluster: .png, .svg, .pdf, or .html "
            "(interactive) (repeatable).",
            show_default=False,
        ),
    ] = None,
    organize_dir: Annotated[
        Path | None,
        typer.Option(
            "--organize",
            help="Make one folder per cluster here, holding symlinks to its documents "
            "(originals are never moved).",
            show_default=False,
        ),
    ] = None,
    copy: Annotated[
        bool, typer.Option("--copy", help="--organize: copy the documents instead of linking.")
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="--organize: write into a folder that is not empty.")
    ] = False,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            help="With SOURCES: model folder or sentence-transformers id. \\[default: "
            "$BIENC_MODEL, else all-MiniLM-L6-v2]",
            show_default=False,
        ),
    ] = None,
    text_column: Annotated[
        list[str] | None,
        typer.Option(
            "--text-column", help="Table column(s) holding the text, joined in order (repeatable)."
        ),
    ] = None,
    id_column: Annotated[
        str | None, typer.Option("--id-column", help="Table column holding the row id.")
    ] = None,
    include: Annotated[
        list[str] | None,
        typer.Option("--include", help="Only read files matching this glob (repeatable)."),
    ] = None,
    exclude: Annotated[
        list[str] | None,
        typer.Option("--exclude", help="Skip files and folders matching this glob (repeatable)."),
    ] = None,
    null: NullOption = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No summary on stderr (errors still shown).")
    ] = False,
) -> None:
    """Group documents by topic, name each group by its keywords, and draw the map.

    Reads SOURCES into a temporary index (or, with no SOURCES, reuses the vectors stored in
    --index: nothing is encoded). Each cluster is named by class-based TF-IDF keywords and
    represented by the documents nearest its centre; distances are cosine (0 = at the
    centre). Exit code 3 if some sources could not be read.
    """
    from bienc_cli import plot as plotting
    from bienc_cli import store, ui
    from bienc_cli.cluster import ClusterOptions, cluster_index, cluster_sources, organize
    from bienc_cli.indexing import IndexRequest
    from bienc_cli.sources import read_path_list

    sources = list(sources or [])
    if sources and index_dir is not None:
        raise UsageError(
            "give SOURCES or --index, not both; to keep the vectors, run "
            "`bienc index SOURCES --index DIR` then `bienc cluster --index DIR`"
        )
    if not sources and (model or text_column or id_column or include or exclude):
        raise UsageError(
            "--model, --text-column, --id-column, --include and --exclude need SOURCES"
        )
    fmt = fmt or (ui.CLUSTER_SUFFIXES.get(output.suffix.lower()) if output else None)
    fmt = fmt or ("table" if sys.stdout.isatty() and output is None else "tsv")
    if fmt not in ui.CLUSTER_FORMATS:
        raise UsageError(f"unknown --format {fmt!r}; choose one of {', '.join(ui.CLUSTER_FORMATS)}")
    if fmt == "parquet" and output is None:
        raise UsageError("--format parquet needs --output FILE.parquet")
    for path in plot or ():
        plotting.check_plot_path(path)
    if (copy or force) and organize_dir is None:
        raise UsageError("--copy and --force go with --organize DIR")
    options = ClusterOptions(
        method=method,
        n_clusters=n_clusters,
        max_clusters=max_clusters,
        threshold=threshold,
        linkage=linkage,
        min_cluster_size=min_cluster_size,
        min_samples=min_samples,
        attach_outliers=attach_outliers,
        seed=seed,
        keywords=keywords,
        representatives=representatives,
    )
    if sources:
        stdin_paths: list[str] = []
        if "-" in sources:
            sources.remove("-")
            stdin_paths = read_path_list(sys.stdin.buffer, null_separated=null)
        table_options: dict[str, Any] = {
            "include": tuple(include) if include else None,
            "exclude": tuple(exclude) if exclude else None,
            "text_columns": tuple(text_column) if text_column else None,
            "id_column": id_column,
        }
        request = IndexRequest(
            root=Path(),  # replaced by a temporary folder
            sources=sources,
            stdin_paths=stdin_paths,
            model=model,
            options={k: v for k, v in table_options.items() if v is not None},
        )
        with ui.progress_bar(sys.stderr.isatty() and not quiet) as progress:
            report = cluster_sources(request, options, progress=progress)
    else:
        report = cluster_index(store.index_path(str(index_dir) if index_dir else None), options)
    if output is None:
        ui.write_clusters(report, fmt, sys.stdout)
        sys.stdout.flush()
    elif fmt == "parquet":
        try:
            ui.write_cluster_parquet(report, str(output))
        except OSError as exc:
            raise UsageError(f"cannot write {output}: {exc.strerror or exc}") from exc
    else:
        try:
            with open(output, "w", encoding="utf-8", newline="") as fh:
                ui.write_clusters(report, fmt, fh)
        except OSError as exc:
            raise UsageError(f"cannot write {output}: {exc.strerror or exc}") from exc
    plotting.write_map(report, plot or [], seed=seed)
    if organize_dir is not None:
        done = organize(report, organize_dir, copy=copy, force=force)
        if not quiet:
            how = "copies" if copy else "symlinks"
            sys.stderr.write(
                f"bienc: organized {len(report.documents)} documents into "
                f"{len(done.folders)} folders under {organize_dir} ({how})\n"
            )
    if not quiet:
        ui.write_cluster_report(report, sys.stderr)
    elif report.errors:
        for item in report.errors:
            _error(f"{item.path}{'#' + item.row_id if item.row_id else ''}: {item.reason}")
    raise typer.Exit(int(ExitStatus.PARTIAL if report.errors else ExitStatus.OK))


@app.command()
@_handle_errors
def dedup(
    sources: Annotated[
        list[str] | None,
        typer.Argument(
            help="Folders, files, glob patterns or tables to compare (read and encoded into a "
            "temporary index); - reads paths from stdin. Omitted: the documents of --index.",
            show_default=False,
        ),
    ] = None,
    index_dir: IndexOption = None,
    threshold: Annotated[
        float | None,
        typer.Option(
            "--threshold",
            "-t",
            help="Cosine similarity of two documents at or above which they are near-duplicates. "
            "Default 0.88, chosen on MRPC and planted copies; see --calibrate.",
            show_default=False,
            rich_help_panel="Detection",
        ),
    ] = None,
    keep: Annotated[
        str,
        typer.Option(
            "--keep",
            help="Which document of a group is kept: first | oldest | newest | longest | "
            "shortest | shortest-path.",
            rich_help_panel="Detection",
        ),
    ] = "first",
    reference: Annotated[
        list[Path] | None,
        typer.Option(
            "--reference",
            help="Folder whose files are never touched and are kept in preference (repeatable).",
            rich_help_panel="Detection",
        ),
    ] = None,
    neighbours: Annotated[
        int,
        typer.Option(
            "--neighbours",
            min=1,
            help="Nearest neighbours searched per document (more when all are duplicates).",
            rich_help_panel="Detection",
        ),
    ] = 8,
    calibrate: Annotated[
        bool,
        typer.Option(
            "--calibrate",
            help="Show how similar each document is to its nearest neighbour, with example "
            "pairs just above and below a few thresholds, to choose --threshold.",
            rich_help_panel="Detection",
        ),
    ] = False,
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format",
            "-f",
            help="table | json | jsonl | csv | tsv | ids (what would be removed). "
            "Default: table on a terminal, tsv otherwise.",
            show_default=False,
            rich_help_panel="Output",
        ),
    ] = None,
    pairs: Annotated[
        bool,
        typer.Option(
            "--pairs", help="List every duplicate pair instead of groups.", rich_help_panel="Output"
        ),
    ] = False,
    null: NullOption = False,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Tables: write the rows without duplicates to FILE (.parquet, .jsonl, .csv), "
            "and the removed rows, with why, to FILE.removed.*",
            rich_help_panel="Output",
        ),
    ] = None,
    plan: Annotated[
        Path | None,
        typer.Option(
            "--plan",
            help="Write a reviewable plan of the file actions to FILE, and change nothing; "
            "carry it out later with --apply.",
            rich_help_panel="Actions",
        ),
    ] = None,
    action: Annotated[
        str | None,
        typer.Option(
            "--action",
            help="move | delete | hardlink | symlink: act on the duplicate files (never on "
            "keepers). delete moves them to a trash folder beside the journal.",
            rich_help_panel="Actions",
        ),
    ] = None,
    to: Annotated[
        Path | None,
        typer.Option(
            "--to",
            help="Where --action move puts duplicates, keeping their folder tree.",
            rich_help_panel="Actions",
        ),
    ] = None,
    yes: Annotated[
        bool,
        typer.Option(
            "--yes", "-y", help="Do not ask before --action delete.", rich_help_panel="Actions"
        ),
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            "-n",
            help="Show what an action would do; change nothing.",
            rich_help_panel="Actions",
        ),
    ] = False,
    apply: Annotated[
        Path | None,
        typer.Option(
            "--apply",
            help="Carry out a reviewed PLAN, after checking every file still has its recorded "
            "hash (action: --action, else the plan's).",
            rich_help_panel="Actions",
        ),
    ] = None,
    journal: Annotated[
        Path | None,
        typer.Option(
            "--journal",
            help="The undo journal. Default: beside the plan (x.json: x.journal.jsonl); "
            "without --plan, in .bienc-dedup/DATE-TIME/.",
            show_default=False,
            rich_help_panel="Actions",
        ),
    ] = None,
    undo: Annotated[
        Path | None,
        typer.Option(
            "--undo",
            help="Restore every file JOURNAL records as acted on.",
            rich_help_panel="Actions",
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            help="Model to encode SOURCES with (default: $BIENC_MODEL, else all-MiniLM-L6-v2).",
            show_default=False,
            rich_help_panel="Input",
        ),
    ] = None,
    text_column: Annotated[
        list[str] | None,
        typer.Option(
            "--text-column", help="Table column(s) holding the text.", rich_help_panel="Input"
        ),
    ] = None,
    id_column: Annotated[
        str | None,
        typer.Option(
            "--id-column", help="Table column holding the row id.", rich_help_panel="Input"
        ),
    ] = None,
    include: Annotated[
        list[str] | None,
        typer.Option(
            "--include", help="Only files matching this glob (repeatable).", rich_help_panel="Input"
        ),
    ] = None,
    exclude: Annotated[
        list[str] | None,
        typer.Option(
            "--exclude",
            help="Skip files and folders matching this glob (repeatable).",
            rich_help_panel="Input",
        ),
    ] = None,
    hidden: Annotated[
        bool | None,
        typer.Option("--hidden", help="Hidden files and folders too.", rich_help_panel="Input"),
    ] = None,
    no_ignore: Annotated[
        bool | None,
        typer.Option(
            "--no-ignore",
            help="Do not honour .gitignore and .biencignore.",
            rich_help_panel="Input",
        ),
    ] = None,
    max_file_size: Annotated[
        str | None,
        typer.Option(
            "--max-file-size",
            help="Skip larger files, tables exempt (default: 20M).",
            rich_help_panel="Input",
        ),
    ] = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No summary on stderr (errors still shown).")
    ] = False,
) -> None:
    """Find exact and near-duplicate documents; report them, or act on the files safely.

    Reports by default and changes nothing. Each group has one keeper; the others are its
    duplicates, each at least --threshold similar to the keeper itself. Exit code 0 when
    duplicates were found, 1 when none were, as grep does; 3 when some sources could not be
    read or some files were skipped.
    """
    from bienc_cli import actions, store, ui
    from bienc_cli import dedup as dd
    from bienc_cli.sources import read_path_list

    fmt = fmt or ("table" if sys.stdout.isatty() else "tsv")
    if fmt not in ui.DEDUP_FORMATS:
        raise UsageError(f"unknown --format {fmt!r}; choose one of {', '.join(ui.DEDUP_FORMATS)}")
    sources = list(sources or [])
    if undo is not None or apply is not None:
        extra = [n for n, v in (("SOURCE", sources), ("--plan", plan), ("--output", output),
                                ("--calibrate", calibrate), ("--pairs", pairs)) if v]  # fmt: skip
        if extra or (undo is not None and apply is not None):
            raise UsageError(
                f"--{'undo' if undo is not None else 'apply'} does not go with "
                f"{', '.join(extra) or '--apply'}"
            )
        if undo is not None:
            report = actions.undo(undo, dry_run=dry_run)
        else:
            report = _dedup_apply(actions.read_plan(apply), action, to, journal, yes, dry_run)
        _dedup_action_output(report, fmt, quiet)
        raise typer.Exit(int(ExitStatus.PARTIAL if report.problems else ExitStatus.OK))

    actions.check_action(action, str(to) if to else None)
    if dry_run and action is None:
        raise UsageError("--dry-run shows what an --action would do: add --action (or --apply)")
    if calibrate and (action or plan or output or pairs):
        raise UsageError("--calibrate only shows similarities: run it without actions or --output")
    if sources and index_dir is not None:
        raise UsageError(
            "give SOURCE paths or --index, not both (to reuse vectors: "
            "`bienc index SOURCE --index DIR`, then `bienc dedup --index DIR`)"
        )
    stdin_paths: list[str] = []
    if "-" in sources:
        sources.remove("-")
        stdin_paths = read_path_list(sys.stdin.buffer, null_separated=null)
    index_options = {
        "text_columns": tuple(text_column) if text_column else None,
        "id_column": id_column,
        "include": tuple(include) if include else None,
        "exclude": tuple(exclude) if exclude else None,
        "hidden": hidden,
        "use_ignore_files": None if no_ignore is None else not no_ignore,
        "max_file_size": parse_size(max_file_size) if max_file_size else None,
    }
    request = dd.DedupRequest(
        sources=sources,
        stdin_paths=stdin_paths,
        index=store.index_path(str(index_dir) if index_dir else None),
        model=model,
        index_options={k: v for k, v in index_options.items() if v is not None},
    )
    options = dd.DedupOptions(
        threshold=dd.DEFAULT_THRESHOLD if threshold is None else threshold,
        keep=keep,
        reference=tuple(os.path.abspath(r) for r in reference or ()),
        neighbours=neighbours,
    )
    with ui.progress_bar(sys.stderr.isatty() and not quiet) as progress:
        run = dd.run_dedup(request, options, calibrate_only=calibrate, progress=progress)
    read_errors = run.corpus.index_report.errors if run.corpus.index_report else []
    for item in read_errors:
        _error(f"{item.path}{'#' + item.row_id if item.row_id else ''}: {item.reason}")
    if run.calibration is not None:
        ui.write_calibration(dd.calibration_record(run.calibration), fmt, sys.stdout)
        raise typer.Exit(int(ExitStatus.PARTIAL if read_errors else ExitStatus.OK))
    detection = run.detection
    assert detection is not None
    status = ExitStatus.OK if detection.groups else ExitStatus.NO_RESULTS
    notes = []
    if output is not None:
        written = dd.write_table_output(run.corpus, detection, output)
        notes.append(
            f"wrote {written.kept} rows to {ui.display_path(written.path)}, and the "
            f"{written.removed} removed to {ui.display_path(written.removed_path)}"
        )
    report = None
    if plan is not None or action is not None:
        planned = actions.build_plan(
            run.corpus, detection, action=action, to=str(to) if to else None
        )
        notes += [
            f"left out of the plan: {ui.display_path(x['path'])}: {x['reason']}"
            for x in planned.left_out
        ]
        if plan is not None:
            actions.write_plan(planned, plan)
            files = sum(len(g.members) for g in planned.groups)
            notes.append(
                f"plan: {files} files in {len(planned.groups)} groups written to {plan}; "
                f"review it, then run: bienc dedup --apply {plan}"
                + ("" if action else " --action move --to DIR (or delete, hardlink, symlink)")
            )
        else:
            planned.path = actions.default_plan_path()
            _dedup_confirm(planned, action, journal, yes, dry_run)
            if planned.groups and not dry_run:  # nothing to do: leave no empty folder
                actions.write_plan(planned, planned.path)
            report = _dedup_apply(planned, action, to, journal, yes=True, dry_run=dry_run)
    if not quiet:
        figures = dd.summary(detection)
        ui.write_dedup_summary(figures | {"notes": figures["notes"] + notes}, sys.stderr)
    if report is not None:
        _dedup_action_output(report, fmt, quiet)
        if report.problems:
            status = ExitStatus.PARTIAL
    elif pairs:
        ui.write_dedup_pairs(dd.pair_records(detection), fmt, sys.stdout)
    else:
        ui.write_dedup_groups(dd.group_records(detection), fmt, sys.stdout, null=null)
    if read_errors:
        status = ExitStatus.PARTIAL
    raise typer.Exit(int(status))


def _dedup_apply(plan, action, to, journal, yes, dry_run):
    """Apply a plan with the given action, else the plan's own."""
    from bienc_cli import actions

    action = action or plan.action
    if action is None:
        raise UsageError(
            "say what to do with the plan: --action move --to DIR, delete, hardlink or symlink"
        )
    _dedup_confirm(plan, action, journal, yes, dry_run)
    to_dir = str(to) if to else (plan.to if action == "move" else None)
    try:
        return actions.apply_plan(plan, action, to=to_dir, journal=journal, dry_run=dry_run)
    except KeyboardInterrupt:
        # The journal holds every action made so far, each one whole: say how to undo them.
        path = journal or (actions.journal_for(plan.path) if plan.path else None)
        _error(f"interrupted; to undo what was done: bienc dedup --undo {path}")
        raise typer.Exit(int(ExitStatus.INTERRUPTED)) from None


def _dedup_confirm(plan, action, journal, yes, dry_run) -> None:
    """Ask before deleting, at a terminal; elsewhere --yes is required."""
    from bienc_cli import actions

    if action != "delete" or yes or dry_run:
        return
    preview = actions.apply_plan(plan, action, journal=journal, dry_run=True)
    count = preview.count("would")
    if not count:
        return
    if not sys.stdin.isatty():
        raise UsageError("--action delete needs --yes when not run at a terminal")
    question = (
        f"Delete {count} duplicate files? (They are kept in {preview.trash} until you remove it.)"
    )
    if not typer.confirm(question, default=False, err=True):
        raise UsageError("not confirmed; nothing was changed")


def _dedup_action_output(report, fmt: str, quiet: bool) -> None:
    from bienc_cli import ui

    data = report.to_dict()
    ui.write_action_report(data, fmt if fmt in ("json", "jsonl") else "tsv", sys.stdout)
    if not quiet:
        ui.write_action_summary(data, sys.stderr)


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
            "--wait", min=0, help="With --repair: wait at most this long for another writer."
        ),
    ] = None,
) -> None:
    """Check an index against its manifest and sidecar: checksums, labels, counts, model.

    Exit code 0 when everything holds, 4 when something does not (after --repair: when the
    repair could not make it hold).
    """
    from bienc_cli import store
    from bienc_cli.verify import repair_index, verify_index

    root = store.index_path(str(index_dir) if index_dir else None)
    result = repair_index(root, wait=wait) if repair else verify_index(root)
    if json_output:
        sys.stdout.write(json.dumps(result.to_dict(), indent=2) + "\n")
    else:
        for check in result.checks:
            mark = "ok  " if check.ok else "FAIL"
            sys.stdout.write(f"{mark} {check.name}{': ' + check.detail if check.detail else ''}\n")
        if result.repaired:
            sys.stdout.write(f"repair: {result.repaired}\n")
    raise typer.Exit(int(ExitStatus.OK if result.ok else ExitStatus.NO_INDEX))


def main() -> None:
    app()
