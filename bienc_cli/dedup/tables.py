"""`bienc dedup --output`: the source tables written again without their duplicate rows."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bienc_cli.dedup.corpus import Corpus
from bienc_cli.dedup.detect import Detection
from bienc_cli.errors import UsageError
from bienc_cli.inputs import table_output
from bienc_cli.inputs.tables import TableProblem

OUTPUT_SUFFIXES = (".parquet", ".jsonl", ".ndjson", ".csv")


@dataclass
class TableOutput:
    path: str  # the rows that are kept
    removed_path: str  # the rows that were removed, with why
    kept: int
    removed: int
    tables: list[str]  # the source tables read


def removed_path_for(path: Path) -> Path:
    """``out.parquet`` -> ``out.removed.parquet``."""
    return path.with_name(f"{path.stem}.removed{path.suffix}")


def check_output_path(path: Path) -> None:
    """Refuse an --output file name of no known table format, before any work is done."""
    if Path(path).suffix.lower() not in OUTPUT_SUFFIXES:
        raise UsageError(f"--output {path}: use a .parquet, .jsonl or .csv file name")


def write_table_output(corpus: Corpus, detection: Detection, path: Path) -> TableOutput:
    """Write the source table(s) without their duplicate rows, and the removed rows aside.

    Rows are read again from the source files, so every column keeps its values. Removed rows
    carry ``dedup_group``, ``dedup_duplicate_of`` (the kept row's id), ``dedup_similarity``
    and ``dedup_match``. With several tables, a ``source`` column says where a row came from.
    """
    path = Path(path)
    check_output_path(path)
    records = detection.records
    tables = list(dict.fromkeys(r.path for r in sorted(records, key=lambda r: r.order) if r.is_row))
    written = {os.path.realpath(path), os.path.realpath(removed_path_for(path))}
    if written & {os.path.realpath(t) for t in tables}:
        raise UsageError(f"--output {path} would overwrite a source table; choose another file")
    if not tables:
        raise UsageError(
            "--output writes deduplicated tables, but no table rows were compared "
            "(give a .parquet, .jsonl or .csv source)"
        )
    why: dict[tuple[str, str], dict[str, Any]] = {}
    for number, group in enumerate(detection.groups, 1):
        keeper = records[group.keeper]
        for m in group.members:
            member = records[m.index]
            if member.is_row:
                why[(member.path, str(member.row_id))] = {
                    "dedup_group": number,
                    "dedup_duplicate_of": keeper.row_id
                    if keeper.path == member.path
                    else keeper.doc_id,
                    "dedup_similarity": round(m.similarity, 4),
                    "dedup_match": m.match,
                }
    kept_rows: list[dict[str, Any]] = []
    removed_rows: list[dict[str, Any]] = []
    schemas = []
    for table in tables:
        try:
            rows, schema = table_output.read_rows(table, corpus.id_column)
        except (OSError, TableProblem) as exc:
            raise UsageError(f"cannot read {table} again to write --output: {exc}") from exc
        schemas.append(schema)
        for row_id, row in rows:
            if len(tables) > 1:
                row = {"source": table} | row
            reason = why.get((table, row_id))
            if reason is None:
                kept_rows.append(row)
            else:
                removed_rows.append(row | reason)
    schema = schemas[0] if len(tables) == 1 else None
    removed_path = removed_path_for(path)
    table_output.write_rows(kept_rows, path, schema)
    table_output.write_rows(removed_rows, removed_path, None)
    return TableOutput(str(path), str(removed_path), len(kept_rows), len(removed_rows), tables)
