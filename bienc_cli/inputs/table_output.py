"""Tables written back: the rows of a source table read again whole, and rows written as
Parquet, JSON Lines or CSV (by suffix). `bienc dedup --output` writes its deduplicated
tables through here, and `bienc cluster -f parquet` its results, so that pyarrow stays with
the code that reads user tables."""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bienc_cli.errors import StorageError
from bienc_cli.inputs.tables import table_rows


def read_rows(path: str, id_column: str | None) -> tuple[list[tuple[str, dict[str, Any]]], Any]:
    """(row id, row) of every row of a table, numbered exactly as `bienc index` numbers them,
    and a Parquet table's schema (None for other formats), so that a copy keeps its column
    types. Raises OSError or tables.TableProblem."""
    schema = None
    with open(path, "rb") as f:
        if os.path.splitext(path)[1].lower() == ".parquet":
            import pyarrow.parquet as pq

            schema = pq.ParquetFile(f).schema_arrow
            f.seek(0)
        return list(table_rows(f, path, id_column)), schema


def write_rows(rows: list[dict[str, Any]], path: Path, schema: Any) -> None:
    """Write rows as Parquet, JSON Lines or CSV (by suffix), through a temporary file."""
    suffix = path.suffix.lower()
    # a name of its own: never a file of the user's that happens to be called .out.csv.tmp
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:12]}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        names = list(dict.fromkeys(k for row in rows for k in row))
        if suffix in (".jsonl", ".ndjson"):
            with open(tmp, "x", encoding="utf-8") as fh:
                for row in rows:
                    fh.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
        elif suffix == ".csv":
            import csv

            with open(tmp, "x", encoding="utf-8", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=names)
                writer.writeheader()
                writer.writerows(rows)
        else:
            import pyarrow.parquet as pq

            pq.write_table(_arrow_table(rows, names, schema), tmp)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise StorageError(f"cannot write {path}: {exc.strerror}") from exc


def write_parquet(rows: list[dict[str, Any]], path: str, types: Mapping[str, str]) -> None:
    """Rows as a Parquet file with exactly these columns, each of a pyarrow type named by its
    alias ("string", "int32", "float32"), so that the file's schema never depends on the
    values (an empty result still has every column). Raises OSError."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([(name, pa.type_for_alias(alias)) for name, alias in types.items()])
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)


def _arrow_table(rows: list[dict[str, Any]], names: list[str], schema: Any) -> Any:
    """Rows as an Arrow table: the source's schema when there is one, else inferred per column
    (a column whose values do not share a type is written as text)."""
    import pyarrow as pa

    if schema is not None:
        with contextlib.suppress(pa.ArrowException):
            return pa.Table.from_pylist(rows, schema=schema)
    columns = {}
    for name in names:
        values = [row.get(name) for row in rows]
        try:
            columns[name] = pa.array(values)
        except (pa.ArrowException, TypeError, ValueError):
            columns[name] = pa.array(
                [None if v is None else json.dumps(v, default=str) for v in values], pa.string()
            )
    return pa.table(columns) if columns else pa.table({})
