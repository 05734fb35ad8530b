"""Tables (Parquet, JSON Lines, CSV/TSV): one Document per row, read as a stream.

Only the text columns become the text to encode; every other column goes into ``meta``.
pyarrow is imported inside the functions that need it (it costs import time).
``readers.read_file`` is the entry point; it catches what escapes from here.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import datetime as dt
import decimal
import io
import json
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any

from bienc_cli.inputs.documents import Document, FileEntry, Note, Skipped

TABLE_SUFFIXES = frozenset({".parquet", ".jsonl", ".ndjson", ".csv", ".tsv"})
AUTO_TEXT_COLUMNS = ("text", "content", "body", "document", "sentence")
ROW_REPORT_LIMIT = 20  # per-row Skipped of one kind per table, then one summary line


@dataclass(frozen=True)
class TableOptions:
    """How to turn table rows into Documents."""

    text_columns: tuple[str, ...] = ()  # joined with "\n\n" in order; empty → auto-detect
    id_column: str | None = None  # row id; default: the 0-based row number
    batch_rows: int = 10_000  # Parquet is read in batches of this many rows, never whole


def is_table(path: str) -> bool:
    """Whether ``path`` is read as a table (one Document per row), by its extension."""
    return os.path.splitext(path)[1].lower() in TABLE_SUFFIXES


class TableProblem(Exception):
    """The whole table cannot be indexed as asked (missing column...); ``str()`` is the reason."""


def read_table(
    entry: FileEntry, f: IO[bytes], options: TableOptions
) -> Iterator[Document | Skipped | Note]:
    """The rows of the table open in ``f`` (binary), as Documents and per-row Skipped."""
    rows, encoding, note = _events(f, entry.path, options)
    if note:
        yield Note(entry.path, note)
    yield from _RowsToDocuments(entry, options, encoding).run(rows)


def table_rows(
    f: IO[bytes], path: str, id_column: str | None = None
) -> Iterator[tuple[str, dict[str, Any]]]:
    """(row id, row) of each parsed row of the table open in ``f``, numbered as indexing does.

    The id is the value of ``id_column`` (as indexing writes it), else, and when that value is
    empty, the 0-based row number. Rows that cannot be parsed are left out, without a word.
    """
    events, _, _ = _events(f, path, TableOptions())
    for kind, value in events:
        if kind == "row":
            number, row = value
            row_id = str(number) if id_column is None else _id_text(row.get(id_column))
            yield row_id or str(number), row


# Each reader yields ("columns", [names]) once, before its first row, then per row either
# ("row", (row_number, dict)) or ("bad", (row_id, reason)) for a row that could not be parsed.
_Event = tuple[str, Any]


def _events(
    f: IO[bytes], path: str, options: TableOptions
) -> tuple[Iterator[_Event], str | None, str | None]:
    """The row reader for ``path``'s format, the text encoding, and a note on that encoding."""
    suffix = os.path.splitext(path)[1].lower()
    if suffix == ".parquet":
        return _parquet_rows(f, options), None, None
    if suffix in (".jsonl", ".ndjson"):
        return _jsonl_rows(f), "utf-8", None
    encoding, note = _sniff_encoding(f)
    return _csv_rows(f, encoding, delimiter="\t" if suffix == ".tsv" else ","), encoding, note


def _parquet_rows(f: IO[bytes], options: TableOptions) -> Iterator[_Event]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(f)
        yield "columns", parquet.schema_arrow.names
        number = 0
        for batch in parquet.iter_batches(batch_size=options.batch_rows, columns=None):
            for row in batch.to_pylist():
                yield "row", (number, row)
                number += 1
    except pa.ArrowNotImplementedError as exc:
        raise TableProblem(f"unsupported Parquet file: {first_line(exc)}") from exc
    except (pa.ArrowException, OSError) as exc:
        # Damaged data surfaces as ArrowInvalid or as an OSError without errno ("Corrupt
        # snappy compressed data"); an OSError with errno is the disk's, not the file's.
        if isinstance(exc, OSError) and exc.errno is not None:
            raise
        raise TableProblem(f"corrupt Parquet file: {first_line(exc)}") from exc


def parquet_columns_and_rows(f: IO[bytes]) -> tuple[list[str], list[dict[str, Any]]]:
    """The column names and every row of the Parquet file open in ``f``, read whole: for the
    small tables a caller needs at once (`bienc eval`'s queries and judgements).
    Raises TableProblem for a file pyarrow cannot read, OSError for the disk's errors."""
    columns: list[str] = []
    rows = []
    for kind, value in _parquet_rows(f, TableOptions()):
        if kind == "columns":
            columns = value
        else:
            rows.append(value[1])
    return columns, rows


def first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _jsonl_rows(f: IO[bytes]) -> Iterator[_Event]:
    # Columns come from the first object: JSON Lines has no schema.
    announced = False
    number = 0
    for line_number, raw in enumerate(f, start=1):
        if line_number == 1:
            raw = raw.removeprefix(codecs.BOM_UTF8)
        if not raw.strip():
            continue
        try:
            row = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            row, reason = None, "not valid UTF-8"
        except json.JSONDecodeError as exc:
            row, reason = None, f"invalid JSON: {exc.msg} at column {exc.colno}"
        except RecursionError:
            row, reason = None, "invalid JSON: nested too deeply"
        else:
            reason = "not a JSON object"
        if not isinstance(row, dict):
            yield "bad", (f"line {line_number}", reason)
        else:
            if not announced:
                yield "columns", list(row)
                announced = True
            yield "row", (number, row)
        number += 1


def _csv_rows(f: IO[bytes], encoding: str, delimiter: str) -> Iterator[_Event]:
    _allow_long_csv_fields()
    text = io.TextIOWrapper(f, encoding=encoding, newline="")
    reader = csv.DictReader(text, delimiter=delimiter)
    try:
        yield "columns", list(reader.fieldnames or [])
        for number, row in enumerate(reader):
            row.pop(None, None)  # fields beyond the header have no name: not a column
            yield "row", (number, row)
    except csv.Error as exc:
        raise TableProblem(f"malformed CSV at line {reader.line_num}: {exc}") from exc
    finally:
        # The wrapper would close ``f`` when collected; the caller owns it. When the caller
        # has already closed ``f`` (it stopped reading early), there is nothing to detach.
        with contextlib.suppress(ValueError):
            text.detach()


def _allow_long_csv_fields() -> None:
    # The csv module refuses fields over 128 KiB by default; a document column can be longer.
    limit = 2**31 - 1
    if csv.field_size_limit() < limit:
        csv.field_size_limit(limit)


def _sniff_encoding(f: IO[bytes]) -> tuple[str, str | None]:
    """The encoding of a CSV/TSV file, by BOM or by trying UTF-8 on the whole of it, then rewind.

    A failure halfway through a stream would leave half the rows indexed; one extra pass is
    cheap next to CSV parsing.
    """
    head = f.read(4)
    f.seek(0)
    by_bom = bom_codec(head)
    if by_bom is not None:
        return by_bom, None
    for codec in ("utf-8", "cp1252"):
        decoder = codecs.getincrementaldecoder(codec)()
        try:
            while chunk := f.read(1 << 20):
                decoder.decode(chunk)
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            continue
        finally:
            f.seek(0)
        return codec, None if codec == "utf-8" else "not valid UTF-8; decoded as cp1252"
    return "latin-1", "not valid UTF-8; decoded as latin-1"


_BOMS = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF32_LE, "utf-32"),  # before UTF-16: FF FE 00 00 starts with FF FE
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def bom_codec(data: bytes) -> str | None:
    """The codec a byte-order mark at the start of ``data`` names (it strips the mark), if any."""
    for bom, codec in _BOMS:
        if data.startswith(bom):
            return codec
    return None


class _RowsToDocuments:
    """Turns parsed rows into Documents, with the per-row checks and flood control."""

    def __init__(self, entry: FileEntry, options: TableOptions, encoding: str | None) -> None:
        self.entry = entry
        self.options = options
        self.encoding = encoding
        self.text_columns: tuple[str, ...] = ()
        self.seen_ids: set[str] = set()
        self.reported = {"no text": 0, "error": 0}

    def run(self, events: Iterable[_Event]) -> Iterator[Document | Skipped]:
        rows = 0
        for kind, value in events:
            if kind == "columns":
                self._choose_columns(value)
            elif kind == "bad":
                rows += 1
                yield from self._row_skip(*value, error=True)
            else:
                rows += 1
                yield from self._row(*value)
        if rows == 0:
            yield Skipped(self.entry.path, "table has no rows", error=False)
        yield from self._summaries()

    def _choose_columns(self, columns: list[str]) -> None:
        if not columns:
            return  # an empty file: reported as "table has no rows"
        available = ", ".join(columns) if columns else "none"
        wanted = self.options.text_columns
        if wanted:
            missing = [c for c in wanted if c not in columns]
            if missing:
                raise TableProblem(
                    f"no column {', '.join(map(repr, missing))} (columns: {available})"
                )
            self.text_columns = wanted
        else:
            self.text_columns = (_auto_text_column(columns, available),)
        id_column = self.options.id_column
        if id_column is not None and id_column not in columns:
            raise TableProblem(f"no id column {id_column!r} (columns: {available})")

    def _row(self, number: int, row: dict[str, Any]) -> Iterator[Document | Skipped]:
        id_column = self.options.id_column
        if id_column is None:
            row_id = str(number)
        else:
            row_id = _id_text(row.get(id_column))
            if row_id is None:
                yield from self._row_skip(str(number), f"no value in id column {id_column!r}")
                return
            if row_id in self.seen_ids:
                yield from self._row_skip(row_id, f"duplicate id {row_id!r} in {id_column!r}")
                return
            self.seen_ids.add(row_id)
        parts = [_cell_text(row.get(column)) for column in self.text_columns]
        text = "\n\n".join(part for part in parts if part is not None)
        if not text:
            yield from self._row_skip(row_id, "no text in row", error=False)
            return
        meta = {
            str(key): _jsonable(value)
            for key, value in row.items()
            if key not in self.text_columns and not isinstance(value, (bytes, bytearray))
        }
        yield Document(
            doc_id=f"{self.entry.path}#{row_id}",
            path=self.entry.path,
            text=text,
            kind="table",
            size=self.entry.size,
            mtime_ns=self.entry.mtime_ns,
            row_id=row_id,
            encoding=self.encoding,
            meta=meta,
        )

    def _row_skip(self, row_id: str, reason: str, error: bool = True) -> Iterator[Skipped]:
        key = "error" if error else "no text"
        self.reported[key] += 1
        if self.reported[key] <= ROW_REPORT_LIMIT:
            yield Skipped(self.entry.path, reason, error=error, row_id=row_id)

    def _summaries(self) -> Iterator[Skipped]:
        more = self.reported["no text"] - ROW_REPORT_LIMIT
        if more > 0:
            yield Skipped(self.entry.path, f"{more} more rows without text", row_id="*")
        more = self.reported["error"] - ROW_REPORT_LIMIT
        if more > 0:
            yield Skipped(self.entry.path, f"{more} more rows with errors", error=True, row_id="*")


def _auto_text_column(columns: list[str], available: str) -> str:
    for name in AUTO_TEXT_COLUMNS:
        if name in columns:
            return name
    by_lower = {c.lower(): c for c in columns}
    for name in AUTO_TEXT_COLUMNS:
        if name in by_lower:
            return by_lower[name]
    raise TableProblem(
        f"no text column found (looked for {', '.join(AUTO_TEXT_COLUMNS)}; columns: "
        f"{available}); pass --text-column"
    )


def _id_text(value: Any) -> str | None:
    value = _jsonable(value)
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # 3.0 from a float column is the id 3
    if isinstance(value, (bool, int, float)):
        return str(value)
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _cell_text(value: Any) -> str | None:
    """A text column's value as text; None when it is null, NaN or blank."""
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("utf-8", "replace")
    value = _jsonable(value)
    if value is None:
        text = None
    elif isinstance(value, str):
        text = value
    elif isinstance(value, (bool, int, float)):
        text = str(value)
    elif isinstance(value, list) and all(not isinstance(v, (list, dict)) for v in value):
        text = " ".join(str(v) for v in value if v is not None and v != "")
    else:
        text = json.dumps(value, ensure_ascii=False)
    return text if text and text.strip() else None


def _jsonable(value: Any) -> Any:
    """``value`` as plain JSON data: datetimes as ISO strings, NaN as None, bytes dropped."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        return str(value)  # exact; a float could lose digits
    if isinstance(value, dict):
        return {
            str(k): _jsonable(v) for k, v in value.items() if not isinstance(v, (bytes, bytearray))
        }
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value if not isinstance(v, (bytes, bytearray))]
    if isinstance(value, (bytes, bytearray)):
        return None
    for method in ("as_py", "item", "tolist"):  # pyarrow and numpy scalars/arrays
        convert = getattr(value, method, None)
        if callable(convert):
            try:
                return _jsonable(convert())
            except Exception:  # a converter that fails: fall back to str()
                break
    return str(value)
