"""`bienc dedup`: find exact and near-duplicate documents, report them or act on the files.

Listed in bienc_cli.cli.main's table of commands; the library work is in
bienc_cli.dedup (run, records, tables) and bienc_cli.actions, the rendering in bienc_cli.ui.dedup.
"""

from __future__ import annotations

import os
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
from bienc_cli.errors import ExitStatus, UsageError


@handle_errors
@with_source_options
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
    source: SourceFlags = UNSET_SOURCE_FLAGS,
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
    from bienc_cli.actions import apply as actions
    from bienc_cli.actions import paths as action_paths
    from bienc_cli.actions import plan as plans
    from bienc_cli.actions import undo as undoing
    from bienc_cli.dedup.corpus import DedupRequest
    from bienc_cli.dedup.detect import DEFAULT_THRESHOLD, DedupOptions
    from bienc_cli.dedup.records import (
        calibration_record,
        group_records,
        pair_records,
        stale_records,
        summary,
    )
    from bienc_cli.dedup.run import run_dedup
    from bienc_cli.dedup.tables import check_output_path, write_table_output
    from bienc_cli.ui import dedup as ui_dedup
    from bienc_cli.ui import output as ui

    if null and "-" not in (sources or []) and fmt != "ids":
        raise UsageError(
            "-0 separates paths read from stdin (give - as a SOURCE) or printed by -f ids"
        )
    fmt = choose_format(fmt, ui_dedup.DEDUP_FORMATS)
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
            report = undoing.undo(undo, dry_run=dry_run)
        else:
            report = _dedup_apply(plans.read_plan(apply), action, to, journal, yes, dry_run)
        _dedup_action_output(report, fmt, quiet)
        raise typer.Exit(int(ExitStatus.PARTIAL if report.problems else ExitStatus.OK))

    plans.check_action(action, str(to) if to else None)
    if dry_run and action is None:
        raise UsageError("--dry-run shows what an --action would do: add --action (or --apply)")
    if calibrate and (action or plan or output or pairs):
        raise UsageError("--calibrate only shows similarities: run it without actions or --output")
    if not sources and (model or source.given()):
        named = ", ".join(["--model"] * bool(model) + source.given())
        verb = "needs" if "," not in named else "need"
        raise UsageError(f"{named} {verb} SOURCES: they say how to read them")
    if sources and index_dir is not None:
        raise UsageError(
            "give SOURCE paths or --index, not both (to reuse vectors: "
            "`bienc index SOURCE --index DIR`, then `bienc dedup --index DIR`)"
        )
    if output is not None:
        check_output_path(output)
    sources, stdin_paths = split_stdin(sources, null=null)
    index_options = source.options()
    request = DedupRequest(
        sources=sources,
        stdin_paths=stdin_paths,
        index=index_root(index_dir),
        model=model,
        index_options=index_options,
    )
    options = DedupOptions(
        threshold=DEFAULT_THRESHOLD if threshold is None else threshold,
        keep=keep,
        reference=tuple(os.path.abspath(r) for r in reference or ()),
        neighbours=neighbours,
    )
    with ui.progress_bar(sys.stderr.isatty() and not quiet) as progress:
        run = run_dedup(request, options, calibrate_only=calibrate, progress=progress)
    read_errors = run.corpus.index_report.errors if run.corpus.index_report else []
    for item in read_errors:
        error(f"{item.path}{'#' + item.row_id if item.row_id else ''}: {item.reason}")
    if run.calibration is not None:
        ui_dedup.write_calibration(calibration_record(run.calibration), fmt, sys.stdout)
        raise typer.Exit(int(ExitStatus.PARTIAL if read_errors else ExitStatus.OK))
    detection = run.detection
    assert detection is not None
    status = ExitStatus.OK if detection.groups else ExitStatus.NO_RESULTS
    stale = stale_records(detection)
    for item in stale:
        # Always said (like read errors): the report below is smaller than the index implies.
        where = ui.display_path(item["path"]) + (f"#{item['row_id']}" if item["row_id"] else "")
        sys.stderr.write(f"bienc: warning: left out: {ui.escape_text(where)} {item['reason']}\n")
    if stale and not request.sources and not request.stdin_paths:
        sys.stderr.write(
            "bienc: warning: the index is older than these files; re-index, then run dedup "
            f"again: bienc index --index {request.index}\n"
        )
    notes = []
    if output is not None:
        written = write_table_output(run.corpus, detection, output)
        notes.append(
            f"wrote {written.kept} rows to {ui.display_path(written.path)}, and the "
            f"{written.removed} removed to {ui.display_path(written.removed_path)}"
        )
    report = None
    if plan is not None or action is not None:
        planned = plans.build_plan(run.corpus, detection, action=action, to=str(to) if to else None)
        warned = {item["path"] for item in stale}
        notes += [
            f"left out of the plan: {ui.display_path(x['path'])}: {x['reason']}"
            for x in planned.left_out
            if x["path"] not in warned
        ]
        if plan is not None:
            plans.write_plan(planned, plan)
            files = sum(len(g.members) for g in planned.groups)
            notes.append(
                f"plan: {files} files in {len(planned.groups)} groups written to {plan}; "
                f"review it, then run: bienc dedup --apply {plan}"
                + ("" if action else " --action move --to DIR (or delete, hardlink, symlink)")
            )
        else:
            planned.path = action_paths.default_plan_path()
            _dedup_confirm(planned, action, journal, yes, dry_run)
            if planned.groups and not dry_run:  # nothing to do: leave no empty folder
                plans.write_plan(planned, planned.path)
            report = _dedup_apply(planned, action, to, journal, yes=True, dry_run=dry_run)
            # Files dropped before the plan are skipped files too: a delete that deletes
            # nothing because the index is stale is not a success.
            actions.report_left_out(report, planned)
    if not quiet:
        figures = summary(detection)
        ui_dedup.write_dedup_summary(figures | {"notes": figures["notes"] + notes}, sys.stderr)
    if report is not None:
        _dedup_action_output(report, fmt, quiet)
        if report.problems:
            status = ExitStatus.PARTIAL
    elif pairs:
        ui_dedup.write_dedup_pairs(pair_records(detection), fmt, sys.stdout)
    else:
        ui_dedup.write_dedup_groups(
            group_records(detection), fmt, sys.stdout, null=null, left_out=stale
        )
    if read_errors or stale or (plan is not None and planned.left_out):
        status = ExitStatus.PARTIAL  # what a plan leaves out is named, and said by the code
    raise typer.Exit(int(status))


def _dedup_apply(plan, action, to, journal, yes, dry_run):
    """Apply a plan with the given action, else the plan's own."""
    from bienc_cli.actions import apply as actions
    from bienc_cli.actions import paths as action_paths

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
        path = journal or (action_paths.journal_for(plan.path) if plan.path else None)
        error(f"interrupted; to undo what was done: bienc dedup --undo {path}")
        raise typer.Exit(int(ExitStatus.INTERRUPTED)) from None


def _dedup_confirm(plan, action, journal, yes, dry_run) -> None:
    """Ask before deleting, at a terminal; elsewhere --yes is required."""
    from bienc_cli.actions import apply as actions

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
    from bienc_cli.ui import dedup as ui_dedup

    data = report.to_dict()
    ui_dedup.write_action_report(data, fmt if fmt in ("json", "jsonl") else "tsv", sys.stdout)
    if not quiet:
        ui_dedup.write_action_summary(data, sys.stderr)
