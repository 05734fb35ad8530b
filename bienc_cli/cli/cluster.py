"""`bienc cluster`: group documents by topic, name the groups, draw the map.

Listed in bienc_cli.cli.main's table of commands; the library work is in
bienc_cli.cluster (algorithms, corpus, organize), the rendering in bienc_cli.ui.cluster and
bienc_cli.cluster.plot.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from bienc_cli.cli.options import (
    UNSET_SOURCE_FLAGS,
    IndexOption,
    NullOption,
    SourceFlags,
    choose_format,
    error,
    handle_errors,
    index_root,
    split_stdin,
    with_source_options,
)
from bienc_cli.errors import ExitStatus, StorageError, UsageError


@handle_errors
@with_source_options
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
            help="Number of clusters (kmeans, agglomerative). [default: the K from 2 to "
            "min(20, sqrt(documents)) with the best silhouette]",
            show_default=False,
        ),
    ] = None,
    max_clusters: Annotated[
        int | None,
        typer.Option(
            "--max-clusters",
            help="Largest K the automatic choice tries (kmeans, agglomerative). "
            "[default: min(20, sqrt(documents))]",
            show_default=False,
        ),
    ] = None,
    threshold: Annotated[
        float | None,
        typer.Option(
            "--threshold",
            help="agglomerative: cut where groups are farther apart than this cosine distance "
            "(0-2; with average linkage, the mean distance between their documents). "
            "[default: K by silhouette, as for kmeans]",
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
            help="hdbscan: smallest group that counts as a cluster. [default: max(5, 1% of "
            "documents)]",
            show_default=False,
        ),
    ] = None,
    min_samples: Annotated[
        int | None,
        typer.Option(
            "--min-samples",
            help="hdbscan: neighbours a document needs to be in a dense region; lower leaves "
            "fewer outliers. [default: min(--min-cluster-size, 10)]",
            show_default=False,
        ),
    ] = None,
    attach_outliers: Annotated[
        bool,
        typer.Option("--attach-outliers", help="hdbscan: put each outlier in the nearest cluster."),
    ] = False,
    seed: Annotated[
        int,
        typer.Option(  # scikit-learn's seeds are 32-bit
            "--seed", min=0, max=2**32 - 1, help="Random seed: same seed, same clusters."
        ),
    ] = 0,
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
            help="table | json | jsonl | csv | tsv | parquet (with --output). [default: from "
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
            help="With SOURCES: model folder or sentence-transformers id. [default: "
            "$BIENC_MODEL, else all-MiniLM-L6-v2]",
            show_default=False,
        ),
    ] = None,
    source: SourceFlags = UNSET_SOURCE_FLAGS,
    null: NullOption = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No summary on stderr (errors still shown).")
    ] = False,
) -> None:
    """Group documents by topic, name each group by its keywords, and draw the map.

    Reads SOURCES into a temporary index (or, with no SOURCES, reuses the vectors stored in
    --index: nothing is encoded). Each cluster is named by class-based TF-IDF keywords and
    represented by the documents nearest its centre; distances are cosine (0 = at the
    centre). Exit code 3 if some sources could not be read, or some documents changed or are
    gone since they were indexed (named on stderr, left out of --organize).
    """
    from bienc_cli.cluster import plot as plotting
    from bienc_cli.cluster.algorithms import ClusterOptions
    from bienc_cli.cluster.corpus import cluster_index, cluster_sources
    from bienc_cli.cluster.organize import organize
    from bienc_cli.indexing.request import IndexRequest
    from bienc_cli.ui import cluster as ui_cluster
    from bienc_cli.ui import output as ui

    sources = list(sources or [])
    if null and "-" not in sources:
        raise UsageError("-0 reads NUL-separated paths from stdin: give - as a SOURCE")
    if sources and index_dir is not None:
        raise UsageError(
            "give SOURCES or --index, not both; to keep the vectors, run "
            "`bienc index SOURCES --index DIR` then `bienc cluster --index DIR`"
        )
    if not sources and (model or source.given()):
        named = ", ".join(["--model"] * bool(model) + source.given())
        verb = "needs" if "," not in named else "need"
        raise UsageError(f"{named} {verb} SOURCES: they say how to read them")
    if output is not None and fmt is None:
        fmt = ui_cluster.CLUSTER_SUFFIXES.get(output.suffix.lower())
        if fmt is None:
            raise UsageError(
                f"--output {output}: name a file ending in "
                f"{', '.join(ui_cluster.CLUSTER_SUFFIXES)}, or give --format"
            )
    fmt = choose_format(fmt, ui_cluster.CLUSTER_FORMATS, to_terminal=output is None)
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
    index = None  # with SOURCES, a temporary one
    if sources:
        sources, stdin_paths = split_stdin(sources, null=null)
        table_options = source.options()
        request = IndexRequest(
            root=Path(),  # replaced by a temporary folder
            sources=sources,
            stdin_paths=stdin_paths,
            model=model,
            options=table_options,
        )
        with ui.progress_bar(sys.stderr.isatty() and not quiet) as progress:
            report = cluster_sources(request, options, progress=progress)
    else:
        index = index_root(index_dir)
        report = cluster_index(index, options)
    if output is None:
        ui_cluster.write_clusters(report, fmt, sys.stdout)
        sys.stdout.flush()
    elif fmt == "parquet":
        try:
            ui_cluster.write_cluster_parquet(report, str(output))
        except OSError as exc:
            raise StorageError(f"cannot write {output}: {exc.strerror or exc}") from exc
    else:
        try:
            with open(output, "w", encoding="utf-8", newline="") as fh:
                ui_cluster.write_clusters(report, fmt, fh)
        except OSError as exc:
            raise StorageError(f"cannot write {output}: {exc.strerror or exc}") from exc
    plotting.write_map(report, plot or [], seed=seed)
    # Always said (like read errors): these files are not what the clusters were made from.
    left_out = " and left out of --organize" if organize_dir is not None else ""
    for i, reason in report.stale:
        where = ui_cluster.doc_location(report.documents[i].path, report.documents[i].row_id)
        _warn(f"{where} {reason}: clustered as indexed{left_out}")
    if report.stale and index is not None:
        _warn(
            "the index is older than these files; re-index, then cluster again: "
            f"bienc index --index {index}"
        )
    done = None
    if organize_dir is not None:
        done = organize(report, organize_dir, copy=copy, force=force)
        for doc, reason in done.left_out:
            _warn(
                f"left out of --organize: {ui_cluster.doc_location(doc.path, doc.row_id)} {reason}"
            )
        if not quiet:
            how = "copies" if copy else "symlinks"
            missed = len(report.stale) + len(done.left_out)
            sys.stderr.write(
                f"bienc: organized {done.filed} documents into "
                f"{len(done.folders)} folders under {ui.escape_text(str(organize_dir))} ({how})"
                + (f"; {missed} left out (see above)" if missed else "")
                + "\n"
            )
    if not quiet:
        ui_cluster.write_cluster_report(report, sys.stderr)
    elif report.errors:
        for item in report.errors:
            error(f"{item.path}{'#' + item.row_id if item.row_id else ''}: {item.reason}")
    partial = report.errors or report.stale or (done is not None and done.left_out)
    raise typer.Exit(int(ExitStatus.PARTIAL if partial else ExitStatus.OK))


def _warn(message: str) -> None:
    """One line on stderr, escaped as ``error`` does."""
    from bienc_cli.ui.output import escape_text

    sys.stderr.write(f"bienc: warning: {escape_text(message)}\n")
