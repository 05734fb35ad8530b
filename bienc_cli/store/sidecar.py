"""The sidecar: one row per chunk, in chunks.parquet, and its query copy in lookup.sqlite.

The query path reads lookup.sqlite with the standard library's sqlite3, so that a cold
`bienc query` never imports pyarrow; everything else reads the Parquet file. Every function
takes a generation folder.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bienc_cli.errors import IndexCorrupt
from bienc_cli.store.layout import LOOKUP, SIDECAR

if TYPE_CHECKING:
    import pyarrow as pa

    Table = pa.Table  # for other modules' annotations: they never import pyarrow

# The columns a query shows, copied from the sidecar into LOOKUP so that the query path can
# fetch its hits by label with the standard library's sqlite3 instead of importing pyarrow.
LOOKUP_COLUMNS = (
    "label", "doc_id", "path", "row_id", "kind", "chunk", "n_chunks",
    "char_start", "char_end", "line_start", "line_end", "text", "meta",
)  # fmt: skip


def sidecar_schema() -> pa.Schema:
    """The sidecar's explicit schema (format version 1). Documented in the README."""
    import pyarrow as pa

    return pa.schema(
        [
            ("label", pa.int64()),  # the chunk's label, unique in the generation
            # the graph item holding the chunk's vector, shared by identical vectors; null
            # or missing (indexes written before bienc kept one item per vector) = label
            ("vector_label", pa.int64()),
            ("doc_id", pa.string()),  # absolute path, or "path#row_id" for table rows
            ("path", pa.string()),  # absolute path of the source file
            ("row_id", pa.string()),  # table rows only
            ("kind", pa.string()),  # text | markdown | rst | code | html | pdf | table
            ("chunk", pa.int32()),  # 0-based chunk number within the document
            ("n_chunks", pa.int32()),
            ("char_start", pa.int64()),  # offsets into the document's extracted text
            ("char_end", pa.int64()),
            ("line_start", pa.int32()),  # 1-based, inclusive
            ("line_end", pa.int32()),
            ("n_tokens", pa.int32()),
            ("doc_hash", pa.string()),  # sha256 of the document's text (hex, 32 chars)
            ("chunk_hash", pa.string()),  # sha256 of the chunk's text (hex, 32 chars)
            ("size", pa.int64()),  # source file size, bytes
            ("mtime_ns", pa.int64()),  # source file modification time
            ("encoding", pa.string()),
            ("text", pa.string()),  # the chunk's text, exactly as encoded
            ("meta", pa.string()),  # table rows: the other columns, as a JSON object
        ]
    )


def with_vector_labels(table: pa.Table) -> pa.Table:
    """``table`` with its ``vector_label`` column complete: a chunk without one (an index
    written before identical vectors shared a graph item) has its vector at its own label."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if "vector_label" not in table.column_names:
        position = table.column_names.index("label") + 1
        return table.add_column(position, pa.field("vector_label", pa.int64()), table["label"])
    if table["vector_label"].null_count == 0:
        return table
    filled = pc.coalesce(table["vector_label"], table["label"])
    return table.set_column(table.column_names.index("vector_label"), "vector_label", filled)


def empty() -> pa.Table:
    """A sidecar without rows: what the first run of an index starts from."""
    return sidecar_schema().empty_table()


def columns(table: pa.Table, names: Sequence[str]) -> dict[str, list[Any]]:
    """The ``names`` columns of ``table`` as plain Python lists."""
    return table.select(list(names)).to_pydict()


def column(table: pa.Table, name: str) -> list[Any]:
    """One column of ``table`` as a plain Python list."""
    return table[name].to_pylist()


def append(table: pa.Table, rows: dict[str, list[Any]]) -> pa.Table:
    """``table`` and the new ``rows`` (one list per sidecar column), in label order."""
    import pyarrow as pa

    new = pa.Table.from_pydict(rows, schema=sidecar_schema())
    return pa.concat_tables([table, new]).sort_by("label")


def drop_documents(table: pa.Table, doc_ids: Collection[str]) -> tuple[pa.Table, set[int]]:
    """``table`` without the rows of the documents whose doc_id column is in ``doc_ids``,
    and the graph items those rows' vectors were."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not doc_ids:
        return table, set()
    drop = pc.is_in(table["doc_id"], pa.array(sorted(doc_ids), pa.string()))
    items = set(table.filter(drop)["vector_label"].to_pylist())
    return table.filter(pc.invert(drop)), items


def restat(table: pa.Table, stats: dict[str, tuple[int, int]]) -> pa.Table:
    """Record the new size and mtime of documents (by doc_id column) whose content did not
    change."""
    import pyarrow as pa

    doc_ids = table["doc_id"].to_pylist()
    sizes = table["size"].to_pylist()
    mtimes = table["mtime_ns"].to_pylist()
    for i, doc_id in enumerate(doc_ids):
        if doc_id in stats:
            sizes[i], mtimes[i] = stats[doc_id]
    table = table.set_column(
        table.schema.get_field_index("size"), "size", pa.array(sizes, pa.int64())
    )
    return table.set_column(
        table.schema.get_field_index("mtime_ns"), "mtime_ns", pa.array(mtimes, pa.int64())
    )


def relabel_vectors(table: pa.Table, item: dict[int, int]) -> pa.Table:
    """``table`` with each chunk's vector in graph item ``item[vector_label]`` instead."""
    import pyarrow as pa

    remapped = pa.array([item[v] for v in table["vector_label"].to_pylist()], pa.int64())
    return table.set_column(table.column_names.index("vector_label"), "vector_label", remapped)


def _has_vector_labels(db: sqlite3.Connection) -> bool:
    """Whether the lookup has a ``vector_label`` column (older ones have none: = label)."""
    return any(row[1] == "vector_label" for row in db.execute("PRAGMA table_info(chunks)"))


def _select(db: sqlite3.Connection, columns: Sequence[str]) -> str:
    """``columns`` as an SQL select list, reading an older lookup's label as its vector_label."""
    if "vector_label" not in columns or _has_vector_labels(db):
        return ", ".join(columns)
    return ", ".join("label AS vector_label" if c == "vector_label" else c for c in columns)


def _write_lookup(path: Path, sidecar: pa.Table) -> None:
    names = [*LOOKUP_COLUMNS, "vector_label"]  # vector_label: a query's way to all chunks of a hit
    columns = ", ".join(names)
    marks = ", ".join("?" * len(names))
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("PRAGMA journal_mode = OFF")  # a fresh file in a private folder: no journal
        db.execute(
            f"CREATE TABLE chunks ({columns.replace('label', 'label INTEGER PRIMARY KEY', 1)})"
        )
        for batch in sidecar.select(names).to_batches(max_chunksize=8192):
            data = batch.to_pydict()
            db.executemany(f"INSERT INTO chunks VALUES ({marks})", zip(*data.values()))
        db.execute("CREATE INDEX chunks_vector_label ON chunks (vector_label)")
        db.commit()


def read(folder: Path, columns: Sequence[str] | None = None, filters: Any = None) -> pa.Table:
    """The sidecar's ``columns`` (all by default), with ``vector_label`` filled in where
    an older index has none (see ``with_vector_labels``)."""
    import pyarrow.parquet as pq

    path = folder / SIDECAR
    wanted = list(columns) if columns else sidecar_schema().names
    try:
        stored = pq.read_schema(path).names
        read = [c for c in wanted if c != "vector_label" or c in stored]
        if "vector_label" in wanted and "label" not in read:
            read.append("label")
        table = pq.read_table(path, columns=read, filters=filters)
    except (OSError, ValueError) as exc:
        raise IndexCorrupt(f"cannot read {path}: {exc}; run `bienc index --rebuild`") from exc
    if "vector_label" in wanted:
        table = with_vector_labels(table)
    return table.select(wanted)


def write(folder: Path, table: pa.Table) -> None:
    """Write ``table`` as the sidecar of the generation being built in ``folder``, and its
    lookup copy. Raises OSError or sqlite3.Error."""
    import pyarrow.parquet as pq

    pq.write_table(table, folder / SIDECAR, compression="zstd", row_group_size=8192)
    _write_lookup(folder / LOOKUP, table)


def lookup(
    folder: Path, labels: Sequence[int], columns: Sequence[str] = LOOKUP_COLUMNS
) -> dict[int, dict]:
    """Sidecar rows by label, without pyarrow (the query path's way in)."""
    out: dict[int, dict] = {}
    with _lookup_db(folder) as db:
        wanted = _select(db, dict.fromkeys(["label", *columns]))
        labels = list(labels)
        for start in range(0, len(labels), 900):  # SQLite's bound-parameter limit
            part = labels[start : start + 900]
            sql = f"SELECT {wanted} FROM chunks WHERE label IN ({','.join('?' * len(part))})"
            for row in db.execute(sql, part):
                out[row["label"]] = dict(row)
    return out


def scan_lookup(folder: Path, columns: Sequence[str]) -> Iterator[sqlite3.Row]:
    """Every row's ``columns``, in label order, without pyarrow."""
    with _lookup_db(folder) as db:
        yield from db.execute(f"SELECT {_select(db, columns)} FROM chunks ORDER BY label")


def members(folder: Path, vector_labels: Sequence[int]) -> dict[int, list[int]]:
    """The labels of the chunks whose vector is each graph item, in label order."""
    out: dict[int, list[int]] = {}
    with _lookup_db(folder) as db:
        column = "vector_label" if _has_vector_labels(db) else "label"
        vector_labels = list(vector_labels)
        for start in range(0, len(vector_labels), 900):  # SQLite's bound-parameter limit
            part = vector_labels[start : start + 900]
            sql = (
                f"SELECT label, {column} FROM chunks "
                f"WHERE {column} IN ({','.join('?' * len(part))}) ORDER BY label"
            )
            for label, vector_label in db.execute(sql, part):
                out.setdefault(vector_label, []).append(label)
    return out


@contextlib.contextmanager
def _lookup_db(folder: Path) -> Iterator[sqlite3.Connection]:
    path = folder / LOOKUP
    if not path.exists():
        raise IndexCorrupt(f"{path} is missing; run `bienc index --rebuild`")
    # immutable: generation files never change, so SQLite may skip all locking.
    db = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
    db.row_factory = sqlite3.Row
    try:
        yield db
    except sqlite3.DatabaseError as exc:
        raise IndexCorrupt(f"cannot read {path}: {exc}; run `bienc index --rebuild`") from exc
    finally:
        db.close()
