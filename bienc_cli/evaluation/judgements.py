"""Judged queries for `bienc eval`: a queries file and a judgements (qrels) file -> ``EvalSet``.

BEIR (``queries.jsonl`` with ``_id``/``text``; qrels TSV ``query-id corpus-id score`` with or
without a header), TREC qrels (``qid 0 docid rel``), and plain CSV/TSV/Parquet/JSONL tables
holding a query (text or id) and a relevant id, optionally a grade.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bienc_cli.errors import UsageError
from bienc_cli.evaluation.metrics import relevant_ids
from bienc_cli.inputs.tables import TableProblem, parquet_columns_and_rows

_TABLE_SUFFIXES = (".parquet", ".jsonl", ".ndjson", ".json", ".csv")
# Column names recognised without an option, compared lower-cased with "-" and " " as "_".
QUERY_ID_NAMES = ("query_id", "qid", "queryid", "_id", "id")
QUERY_TEXT_NAMES = ("query", "text", "question", "query_text", "title")
DOC_ID_NAMES = (
    "corpus_id", "doc_id", "docid", "document_id", "document", "doc", "relevant",
    "relevant_id", "relevant_ids", "corpus_ids", "doc_ids", "pid", "passage_id", "path", "file",
)  # fmt: skip
SCORE_NAMES = ("score", "relevance", "rel", "grade", "label", "judgement", "judgment")


@dataclass(frozen=True)
class Columns:
    """Column names given on the command line; None: recognise them by name."""

    query_id: str | None = None
    query_text: str | None = None
    doc_id: str | None = None
    score: str | None = None


@dataclass(frozen=True)
class EvalQuery:
    id: str
    text: str
    meta: dict[str, Any] = field(default_factory=dict)  # the queries file's other columns


@dataclass
class EvalSet:
    """Judged queries ready to run: each has a text and at least one judgement."""

    queries: list[EvalQuery]
    qrels: dict[str, dict[str, int]]  # query id -> corpus id -> grade
    unjudged: int = 0  # queries with a text but no judgement: ignored
    no_text: int = 0  # judged query ids the queries file lacks: ignored
    no_relevant: int = 0  # judged queries without a relevant document: they score 0
    sources: dict[str, str] = field(default_factory=dict)  # role -> file, for the report


@dataclass
class _Table:
    path: str
    columns: list[str]
    rows: list[dict[str, Any]]


def load_eval_set(
    queries_path: str | os.PathLike | None,
    qrels_path: str | os.PathLike | None,
    columns: Columns = Columns(),
) -> EvalSet:
    """Read judged queries from a queries file and/or a judgements file.

    Either file alone is enough when it holds both a query and a relevant id (a plain table
    ``query,relevant``). With both, queries and judgements are joined on the query id, or on
    the query text when the judgements hold texts rather than ids.
    """
    if queries_path is None and qrels_path is None:
        raise UsageError("give --qrels FILE (judgements), --queries FILE, or both")
    queries_table = _read_table(queries_path, "queries") if queries_path else None
    qrels_table = _read_table(qrels_path, "qrels") if qrels_path else queries_table
    assert qrels_table is not None
    _check_given_columns(columns, [t for t in (queries_table, qrels_table) if t is not None])

    doc_col = _column(qrels_table, columns.doc_id, DOC_ID_NAMES, "relevant document id", "--doc-column")  # fmt: skip
    score_col = _column(qrels_table, columns.score, SCORE_NAMES, required=False, exclude={doc_col})
    taken = {doc_col, score_col}
    qid_col = _column(qrels_table, columns.query_id, QUERY_ID_NAMES, required=False, exclude=taken)
    text_col = _column(qrels_table, columns.query_text, QUERY_TEXT_NAMES, required=False, exclude=taken | {qid_col})  # fmt: skip
    if qid_col is None and text_col is None:
        raise UsageError(
            f"{qrels_table.path}: no query id or query column (columns: "
            f"{', '.join(qrels_table.columns)}); name it with --query-id-column or --query-column"
        )
    by_text = qid_col is None  # queries are named by their text: the text is the id
    key_col: str = qid_col or text_col  # type: ignore[assignment]
    qrels = _judgements(qrels_table, key_col, doc_col, score_col, by_text=by_text)  # type: ignore[arg-type]

    texts: dict[str, str] = {}
    metas: dict[str, dict[str, Any]] = {}
    if queries_table is not None and queries_table is not qrels_table:
        q_text: str = _column(queries_table, columns.query_text, QUERY_TEXT_NAMES, "query text", "--query-column")  # type: ignore[assignment]  # fmt: skip
        q_id = _column(queries_table, columns.query_id, QUERY_ID_NAMES, required=False, exclude={q_text})  # fmt: skip
        if not by_text and q_id is None:
            raise UsageError(
                f"{qrels_table.path} names queries by id ({qid_col!r}) but {queries_table.path} "
                f"has no id column (columns: {', '.join(queries_table.columns)}); "
                "name it with --query-id-column"
            )
        key = q_text if by_text else q_id
        for row in queries_table.rows:
            query_id, text = _key(row.get(key), by_text), _as_text(row.get(q_text))
            if query_id is not None and text:
                texts.setdefault(query_id, text)
                metas.setdefault(query_id, {c: v for c, v in row.items() if c not in (key, q_text)})
    text_source = text_col if text_col is not None else (key_col if by_text else None)
    skip = {qid_col, text_col, doc_col, score_col}
    for row in qrels_table.rows:
        query_id = _key(row.get(key_col), by_text)
        if query_id is None:
            continue
        if text_source is not None and _as_text(row.get(text_source)):
            texts.setdefault(query_id, _as_text(row.get(text_source)))
        if queries_table in (None, qrels_table):  # no queries file: other columns describe it
            metas.setdefault(query_id, {c: v for c, v in row.items() if c not in skip})

    runnable = [q for q in qrels if q in texts]
    if not runnable and queries_table in (None, qrels_table):
        raise UsageError(
            f"{qrels_table.path} names queries by id ({qid_col!r}); give their texts with "
            "--queries FILE"
        )
    if not runnable:
        raise UsageError(
            f"no judged query has a text: query ids in {qrels_table.path} (e.g. "
            f"{next(iter(qrels))!r}) are not in the queries file"
        )
    if not any(relevant_ids(qrels[q]) for q in runnable):
        raise UsageError(
            f"{qrels_table.path}: no judgement has a grade above 0 (nothing is relevant); "
            "check the grade column (--score-column)"
        )
    return EvalSet(
        queries=[EvalQuery(q, texts[q], metas.get(q, {})) for q in runnable],
        qrels={q: qrels[q] for q in runnable},
        unjudged=sum(1 for q in texts if q not in qrels),
        no_text=len(qrels) - len(runnable),
        no_relevant=sum(1 for q in runnable if not relevant_ids(qrels[q])),
        sources={"queries": str(queries_path or ""), "qrels": str(qrels_path or queries_path)},
    )


def _key(value: Any, by_text: bool) -> str | None:
    """A query's key: its id, or its text with runs of white space made one space."""
    key = _as_id(value)
    return " ".join(key.split()) if key is not None and by_text else key


def _check_given_columns(columns: Columns, tables: Sequence[_Table]) -> None:
    for option, name in (
        ("--query-id-column", columns.query_id),
        ("--query-column", columns.query_text),
        ("--doc-column", columns.doc_id),
        ("--score-column", columns.score),
    ):
        if name is not None and not any(_find(t, name) for t in tables):
            available = ", ".join(dict.fromkeys(c for t in tables for c in t.columns))
            raise UsageError(f"{option} {name}: no such column (columns: {available})")


def _judgements(
    table: _Table, query_col: str, doc_col: str, score_col: str | None, *, by_text: bool
) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = defaultdict(dict)
    for number, row in enumerate(table.rows, start=1):
        query_id = _key(row.get(query_col), by_text)
        if query_id is None:
            continue
        grade = 1 if score_col is None else _grade(row.get(score_col), table.path, number)
        cell = row.get(doc_col)
        for doc in cell if isinstance(cell, list) else [cell]:
            doc_id = _as_id(doc)
            if doc_id is not None:
                qrels[query_id][doc_id] = max(grade, qrels[query_id].get(doc_id, grade))
    if not qrels:
        raise UsageError(f"{table.path}: no judgements (no row with a query and a relevant id)")
    return dict(qrels)


def _grade(value: Any, path: str, number: int) -> int:
    if value is None or value == "":
        return 1
    if isinstance(value, bool):
        return int(value)
    try:
        return int(float(value))
    except (TypeError, ValueError):
        raise UsageError(
            f"{path}: row {number}: grade {value!r} is not a number; use 0 (not relevant), "
            "1, 2... or name the grade column with --score-column"
        ) from None


def _normal(name: str) -> str:
    return name.strip().lower().replace("-", "_").replace(" ", "_")


def _find(table: _Table, name: str) -> str | None:
    """``name`` as spelled in the table, matching case and -/_ loosely."""
    if name in table.columns:
        return name
    by_normal = {_normal(c): c for c in table.columns}
    return by_normal.get(_normal(name))


def _column(
    table: _Table,
    given: str | None,
    names: Sequence[str],
    what: str = "",
    option: str = "",
    *,
    required: bool = True,
    exclude: set[str | None] | None = None,
) -> str | None:
    """The column holding ``what``: the one given on the command line, else a known name."""
    if given is not None and _find(table, given) is not None:
        return _find(table, given)
    # A name given for the other file (checked to exist there): recognise this one's.
    by_normal = {_normal(c): c for c in table.columns if c not in (exclude or set())}
    for name in names:
        if name in by_normal:
            return by_normal[name]
    if required:
        raise UsageError(
            f"{table.path}: no {what} column (columns: {', '.join(table.columns)}; looked for "
            f"{', '.join(names[:6])}...); name it with {option}"
        )
    return None


def _read_table(path: str | os.PathLike, role: str) -> _Table:
    """Rows of a Parquet/JSONL/JSON/CSV/TSV file; a TSV or text file may lack a header."""
    path = str(path)
    suffix = os.path.splitext(path)[1].lower()
    try:
        if suffix == ".parquet":
            return _parquet_table(path)
        with open(path, encoding="utf-8-sig", newline="") as fh:
            if suffix in (".jsonl", ".ndjson"):
                return _jsonl_table(path, fh)
            if suffix == ".json":
                return _json_table(path, fh)
            if suffix == ".csv":
                return _csv_table(path, fh)
            return _delimited_table(path, fh, role)
    except FileNotFoundError:
        raise UsageError(f"no such file: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from exc


def _parquet_table(path: str) -> _Table:
    with open(path, "rb") as fh:
        try:
            columns, rows = parquet_columns_and_rows(fh)
        except TableProblem as exc:
            raise UsageError(f"cannot read {path}: {exc}") from exc
    return _Table(path, columns, rows)


def _jsonl_table(path: str, fh) -> _Table:
    rows, columns = [], {}
    for number, line in enumerate(fh, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UsageError(f"{path}: line {number}: invalid JSON: {exc.msg}") from None
        if not isinstance(row, dict):
            raise UsageError(f"{path}: line {number}: not a JSON object")
        rows.append(row)
        columns.update(dict.fromkeys(row))
    return _Table(path, list(columns), rows)


def _json_table(path: str, fh) -> _Table:
    try:
        data = json.load(fh)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path}: invalid JSON: {exc.msg} at line {exc.lineno}") from None
    if isinstance(data, dict):  # {"query id": {"corpus id": grade}}, as pytrec_eval takes
        if all(isinstance(v, dict) for v in data.values()):
            rows = [
                {"query_id": q, "corpus_id": d, "score": g}
                for q, docs in data.items()
                for d, g in docs.items()
            ]
            return _Table(path, ["query_id", "corpus_id", "score"], rows)
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise UsageError(f"{path}: expected a list of objects or {{query: {{doc: grade}}}}")
    columns: dict[str, None] = {}
    for row in data:
        columns.update(dict.fromkeys(row))
    return _Table(path, list(columns), data)


def _csv_table(path: str, fh) -> _Table:
    reader = csv.DictReader(fh)
    try:
        rows = [{k: v for k, v in row.items() if k is not None} for row in reader]
    except csv.Error as exc:
        raise UsageError(f"{path}: malformed CSV at line {reader.line_num}: {exc}") from None
    return _Table(path, list(reader.fieldnames or []), rows)


def _delimited_table(path: str, fh, role: str) -> _Table:
    """TSV, TREC or whitespace-separated text. Without a header, columns go by position:

    qrels: ``query doc`` | ``query doc grade`` (BEIR) | ``query iteration doc grade`` (TREC);
    queries: ``id text`` (MS MARCO's queries.tsv).
    """
    lines = [line.rstrip("\r\n") for line in fh if line.strip()]
    if not lines:
        raise UsageError(f"{path}: the file is empty")
    tab = "\t" in lines[0]

    def split(line: str) -> list[str]:
        if tab:
            return line.split("\t")
        return line.split(None, 1) if role == "queries" else line.split()

    first = split(lines[0])
    known = {*QUERY_ID_NAMES, *QUERY_TEXT_NAMES, *DOC_ID_NAMES, *SCORE_NAMES}
    has_header = any(_normal(f) in known for f in first) or (
        role == "qrels" and len(first) >= 3 and not _is_number(first[-1])
    )
    if has_header:
        columns, body = [f.strip() for f in first], lines[1:]
    else:
        columns, body = _positional_columns(path, role, len(first)), lines
    rows = []
    for number, line in enumerate(body, start=2 if has_header else 1):
        fields = split(line)
        if len(fields) != len(columns):
            raise UsageError(
                f"{path}: line {number} has {len(fields)} fields, expected {len(columns)}"
            )
        rows.append(dict(zip(columns, (f.strip() for f in fields))))
    return _Table(path, columns, rows)


def _positional_columns(path: str, role: str, width: int) -> list[str]:
    layouts = {
        "qrels": {
            2: ["query_id", "corpus_id"],
            3: ["query_id", "corpus_id", "score"],
            4: ["query_id", "iteration", "corpus_id", "score"],
        },
        "queries": {2: ["_id", "text"]},
    }
    try:
        return layouts[role][width]
    except KeyError:
        raise UsageError(
            f"{path}: cannot tell the columns of a {width}-field line without a header; "
            "add a header line naming them"
        ) from None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _as_id(value: Any) -> str | None:
    if value is None or isinstance(value, (list, dict)):
        return None
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        if value.is_integer():
            return str(int(value))  # 3.0 from a float column is the id 3
    text = str(value).strip()
    return text or None


def _as_text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ("" if value is None else str(value))
