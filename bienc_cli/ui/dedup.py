"""Rendering for `bienc dedup`: duplicate groups, pairs, calibration and action reports.

Shared helpers (display_path, snippet, ...) live in bienc_cli.ui.output; rich is used only on terminals.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from typing import Any, TextIO

from bienc_cli.inputs.documents import stored_path
from bienc_cli.ui.output import (
    cell,
    display_path,
    escape_text,
    fixed,
    json_path,
    snippet,
    write_paths,
)

DEDUP_FORMATS = ("table", "json", "jsonl", "csv", "tsv", "ids")
_DEDUP_CSV_FIELDS = (
    "group", "role", "similarity", "match", "path", "row_id", "kind", "reference", "doc_id",
)  # fmt: skip
_PAIR_CSV_FIELDS = ("similarity", "match", "passage", "a", "b")


def _dedup_doc(doc: dict[str, Any]) -> dict[str, Any]:
    """A document of a dedup record for JSON or CSV: its path relative to the current folder,
    in the JSON form of a path (``doc_id`` keeps the exact identity, see documents.stored_path)."""
    return dict(doc, path=json_path(doc["path"]))


def _dedup_where(doc: dict[str, Any]) -> str:
    path = display_path(doc["path"])
    return f"{path}#{doc['row_id']}" if doc.get("row_id") is not None else path


def write_dedup_groups(
    groups: Sequence[dict[str, Any]],
    fmt: str,
    out: TextIO,
    *,
    null: bool = False,
    left_out: Sequence[dict[str, Any]] = (),
) -> None:
    """Duplicate groups (dedup.group_records) in one of DEDUP_FORMATS.

    ``ids`` lists what would be removed: the row id of table rows, the path of files.
    ``left_out`` (dedup.stale_records): json and jsonl end with a record of group null, no
    keeper and no members that lists them; the other formats leave them to stderr.
    """
    shown = [
        dict(g, keeper=_dedup_doc(g["keeper"]), members=[_dedup_doc(m) for m in g["members"]])
        for g in groups
    ]
    if left_out and fmt in ("json", "jsonl"):
        gone = [_dedup_doc(d) for d in left_out]
        shown.append({"group": None, "keeper": None, "members": [], "left_out": gone})
    if fmt == "json":
        json.dump(shown, out, ensure_ascii=False, indent=2)
        out.write("\n")
    elif fmt == "jsonl":
        for group in shown:
            out.write(json.dumps(group, ensure_ascii=False) + "\n")
    elif fmt == "ids":
        removed = [
            m["row_id"] if m["row_id"] is not None else m["path"]
            for group in groups
            for m in group["members"]
        ]
        write_paths(removed, out, null=null)
    elif fmt in ("csv", "tsv"):
        rows = []
        for group in shown if fmt == "csv" else groups:
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
                fields = [str(row["group"]), role, fixed(row["similarity"]), _dedup_where(row)]
                out.write("\t".join(escape_text(f) for f in fields) + "\n")
    else:
        _dedup_groups_table(groups, out)


def _dedup_groups_table(groups: Sequence[dict[str, Any]], out: TextIO) -> None:
    from rich.console import Console
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
            cell(_dedup_where(keeper)),
            cell(snippet(keeper["snippet"], 90)),
        )
        for m in group["members"]:
            table.add_row(
                "",
                m["match"],
                fixed(m["similarity"], 3),
                cell(_dedup_where(m)),
                cell(snippet(m["snippet"], 90)),
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
            fields = [fixed(pair["similarity"]), pair["match"], display_path(pair["a"])]
            fields.append(display_path(pair["b"]))
            out.write("\t".join(escape_text(f) for f in fields) + "\n")
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(expand=True)
        table.add_column("sim", justify="right", style="cyan", no_wrap=True)
        table.add_column("", no_wrap=True)
        table.add_column("a", overflow="fold")
        table.add_column("b", overflow="fold")
        for pair in pairs:
            table.add_row(
                fixed(pair["similarity"], 3),
                pair["match"],
                cell(display_path(pair["a"])),
                cell(display_path(pair["b"])),
            )
        Console(file=out).print(table)


def write_calibration(data: dict[str, Any], fmt: str, out: TextIO) -> None:
    """`bienc dedup --calibrate`: nearest-neighbour similarities and pairs around thresholds."""
    if fmt in ("json", "jsonl"):
        shown = dict(data, thresholds=[_calibration_example(e) for e in data["thresholds"]])
        json.dump(shown, out, ensure_ascii=False, indent=2 if fmt == "json" else None)
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
                where, text = _dedup_where(doc), snippet(doc["snippet"], 110)
                out.write(f"    {escape_text(where)}: {escape_text(text)}\n")
        out.write("\n")


def _calibration_example(example: dict[str, Any]) -> dict[str, Any]:
    shown = dict(example)
    for side in ("above", "below"):
        if example[side] is not None:
            pair = example[side]
            shown[side] = dict(pair, a=_dedup_doc(pair["a"]), b=_dedup_doc(pair["b"]))
    return shown


def write_dedup_summary(summary: dict[str, Any], err: TextIO) -> None:
    """One line on stderr: what was compared and what was found."""
    err.write(
        f"bienc: {_count(summary['documents'], 'document')}, "
        f"{_count(summary['duplicates'], 'duplicate')} in {_count(summary['groups'], 'group')} "
        f"({summary['exact']} exact) at threshold {summary['threshold']:.2f}, "
        f"keep {summary['keep']}, in {summary['seconds']:.1f}s\n"
    )
    for line in summary.get("notes", []):
        err.write(f"  {escape_text(line)}\n")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


ACTION_VERBS = {"move": "moved", "delete": "deleted", "hardlink": "hardlinked", "symlink": "symlinked", "restore": "restored"}  # fmt: skip


def write_action_report(report: dict[str, Any], fmt: str, out: TextIO) -> None:
    """What an apply or undo did (actions.report.ActionReport), one file per line; in JSON,
    absolute paths, a name that is not UTF-8 as the index stores it (documents.stored_path)."""
    if fmt in ("json", "jsonl"):
        shown = _stored_paths(report, ("plan", "journal", "trash"))
        shown["files"] = [_stored_paths(f, ("path", "dest", "keeper")) for f in report["files"]]
        json.dump(shown, out, ensure_ascii=False, indent=2 if fmt == "json" else None)
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
        out.write("\t".join(escape_text(field) for field in fields) + "\n")


def _stored_paths(record: dict[str, Any], keys: Sequence[str]) -> dict[str, Any]:
    return record | {k: stored_path(record[k]) for k in keys if record[k] is not None}


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
        trash = escape_text(display_path(report["trash"]))
        err.write(f"  originals kept in {trash}; remove it to free space\n")
    journal = escape_text(display_path(report["journal"]))
    err.write(f"  journal: {journal}; undo with: bienc dedup --undo {journal}\n")
