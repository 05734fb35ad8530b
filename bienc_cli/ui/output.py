"""Rendering: records in, text out. Results go to stdout; progress, summaries and errors to stderr.

rich is used only when writing to a terminal; pipes get plain, stable formats.
This module holds the shared helpers and the index/query/info output; each bigger command
renders in its own module next to it: ui_eval, ui_cluster, ui_dedup.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import sys
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, TextIO

from bienc_cli.inputs.documents import escape_text, real_path, stored_path
from bienc_cli.util.text import one_line, shorten

if TYPE_CHECKING:
    from bienc_cli.indexing.request import ProgressFn, RunReport
    from bienc_cli.inputs.documents import Skipped
    from bienc_cli.query.search import Hit

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


def fixed(value: float, digits: int = 4, *, sign: bool = False) -> str:
    """``value`` with ``digits`` decimals, never ``-0.0000``: a rounding error below zero
    (1 - cos of a vector with itself) prints as the zero it is."""
    if round(value, digits) == 0:
        value = 0.0
    return f"{value:{'+' if sign else ''}.{digits}f}"


def cell(text: str | Sequence[str], style: str = "") -> Any:
    """A rich table cell or title holding ``text`` (or these lines) as it is: escaped, and
    never read as markup (``[/x]`` in a document would stop the table) or an ``:emoji:``."""
    from rich.text import Text

    lines = [text] if isinstance(text, str) else text
    return Text("\n".join(escape_text(line) for line in lines), style=style)


def display_path(path: str, cwd: str | None = None) -> str:
    """The path relative to the current folder when it is inside it, else absolute (``path``
    may be as the index stores it). Not escaped: the renderer escapes what it writes."""
    path = real_path(path)
    cwd = cwd or os.getcwd()
    if path == cwd or path.startswith(cwd.rstrip(os.sep) + os.sep):
        path = os.path.relpath(path, cwd)
    return path


def json_path(path: str) -> str:
    """A path for a JSON, CSV or Parquet record, whose strings must be UTF-8: as display_path
    shows it (JSON escapes control characters itself), or, for a name that is not UTF-8, the
    file:// URL of its bytes that the index stores and ``doc_id`` holds: exact, never taken
    for a real name (those are absolute or relative, never a URL)."""
    real = real_path(path)
    stored = stored_path(real)
    return display_path(real) if stored == real else stored


def snippet(text: str, width: int = 160) -> str:
    return shorten(text, width)


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
        "score": round(hit.score, 4) + 0.0,  # + 0.0: -0.0 becomes 0.0
        "path": json_path(hit.path),
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
            fields = [fixed(hit.score), location(hit), snippet(hit.text)]
            fields = ([one_line(hit.query)] if several else []) + fields
            out.write("\t".join(escape_text(f) for f in fields) + "\n")
    elif fmt == "csv":
        writer = csv.DictWriter(
            out, fieldnames=_CSV_FIELDS, extrasaction="ignore", lineterminator="\n"
        )
        writer.writeheader()
        for hit in hits:
            writer.writerow(hit_record(hit))
    elif fmt == "paths":
        write_paths(list(dict.fromkeys(display_path(h.path) for h in hits)), out, null=null)
    else:
        _hits_table(results, out)


def write_paths(paths: Sequence[str], out: TextIO, *, null: bool) -> None:
    """A list of paths. With -0, the names' own bytes, each ended by NUL, written to
    ``out``'s binary buffer, so that ``xargs -0 rm`` reaches exactly these files; else one
    per line, escaped (a newline in a name stays one line)."""
    if not null:
        out.writelines(escape_text(path) + "\n" for path in paths)
        return
    out.flush()
    buffer = out.buffer  # type: ignore[attr-defined]
    buffer.write(b"".join(os.fsencode(path) + b"\0" for path in paths))
    buffer.flush()


def _hits_table(results: Sequence[Sequence[Hit]], out: TextIO) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(file=out)
    for hits in results:
        if not hits:
            continue
        table = Table(title=cell(hits[0].query, "bold") if len(results) > 1 else None, expand=True)
        table.add_column("score", justify="right", style="cyan", no_wrap=True)
        table.add_column("where", style="green", overflow="fold", ratio=2)
        table.add_column("snippet", ratio=5)
        for hit in hits:
            table.add_row(fixed(hit.score, 3), cell(location(hit)), cell(snippet(hit.text, 200)))
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
    write_skipped(report.skipped, err, max_skipped=max_skipped, more=" (see --json)")
    for note in report.notes[:max_skipped]:
        err.write(f"  note: {escape_text(display_path(note.path))}: {escape_text(note.message)}\n")


def write_info(info: dict[str, Any], out: TextIO) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column()
    for key, value in _flatten(info):
        table.add_row(key, cell(str(value)))
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


def write_skipped(
    skipped: Sequence[Skipped], err: TextIO, *, max_skipped: int, more: str = ""
) -> None:
    """The report's lines for what was skipped or could not be read, at most ``max_skipped``."""
    for item in skipped[:max_skipped]:
        where = display_path(item.path) + (f"#{item.row_id}" if item.row_id else "")
        err.write(f"  {'error' if item.error else 'skipped'}: {escape_text(where)}: ")
        err.write(f"{escape_text(item.reason)}\n")
    if len(skipped) > max_skipped:
        err.write(f"  ... and {len(skipped) - max_skipped} more{more}\n")
