"""`bienc eval`: retrieval quality on the user's own judged queries, and an audit of the HNSW graph.

Three parts, in the order data flows:

* Loaders turn a queries file and a judgements (qrels) file into an ``EvalSet``: BEIR
  (``queries.jsonl`` with ``_id``/``text``; qrels TSV ``query-id corpus-id score`` with or
  without a header), TREC qrels (``qid 0 docid rel``), and plain CSV/TSV/Parquet/JSONL tables
  holding a query (text or id) and a relevant id, optionally a grade.
* Metrics are pure functions of one ranking (corpus ids, best first) and one query's
  judgements (corpus id -> grade); they reproduce pytrec_eval/trec_eval, as MTEB reports them.
* ``evaluate`` runs the queries through ``query.search`` (the very search `bienc query` does),
  maps the judged corpus ids onto the index's documents, and scores; with ``ann`` it also
  searches every query exactly (brute force over the stored vectors) and through HNSW at
  several ``ef``, to say how much the approximate graph loses.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bienc_cli import query, store
from bienc_cli.errors import UsageError

if TYPE_CHECKING:
    import numpy as np

# --------------------------------------------------------------------------------------------
# Metrics: pure functions over one ranking and one query's judgements.
#
# ``ranking``: corpus ids, best first, no repeats. ``judged``: corpus id -> graded relevance;
# a grade > 0 means relevant, 0 or less means judged not relevant (as trec_eval's default
# relevance level of 1). A query with no relevant document scores 0 on every metric, as in
# trec_eval.
# --------------------------------------------------------------------------------------------


def _relevant(judged: Mapping[str, int]) -> set[str]:
    return {doc for doc, grade in judged.items() if grade > 0}


def dcg(gains: Iterable[float]) -> float:
    """Discounted cumulative gain with linear gains: sum of gain_i / log2(i + 1), i from 1."""
    return sum(gain / math.log2(i + 2) for i, gain in enumerate(gains))


def ndcg_at_k(ranking: Sequence[str], judged: Mapping[str, int], k: int) -> float:
    """nDCG@k as pytrec_eval's ``ndcg_cut_k`` (what MTEB reports).

    Gains are the grades themselves (linear, not 2^g - 1); the ideal DCG sorts *all* the
    query's relevant judgements, retrieved or not, and cuts at ``k``.
    """
    gained = dcg(max(judged.get(doc, 0), 0) for doc in ranking[:k])
    ideal = dcg(sorted((g for g in judged.values() if g > 0), reverse=True)[:k])
    return gained / ideal if ideal > 0 else 0.0


def recall_at_k(ranking: Sequence[str], judged: Mapping[str, int], k: int) -> float:
    """Relevant documents in the top ``k`` / all relevant documents (pytrec_eval ``recall_k``)."""
    relevant = _relevant(judged)
    if not relevant:
        return 0.0
    return sum(1 for doc in ranking[:k] if doc in relevant) / len(relevant)


def mrr_at_k(ranking: Sequence[str], judged: Mapping[str, int], k: int) -> float:
    """1 / rank of the first relevant document within the top ``k``, else 0 (MTEB's mrr_at_k)."""
    for rank, doc in enumerate(ranking[:k], start=1):
        if judged.get(doc, 0) > 0:
            return 1.0 / rank
    return 0.0


def average_precision(
    ranking: Sequence[str], judged: Mapping[str, int], k: int | None = None
) -> float:
    """AP truncated at ``k``, as pytrec_eval's ``map_cut_k`` (MTEB's map_at_k); ``k=None``: ``map``.

    The sum of precision@i over the ranks i <= k that hold a relevant document, divided by the
    number of relevant documents of the query (all of them, not min(relevant, k)).
    """
    relevant = _relevant(judged)
    if not relevant:
        return 0.0
    found, total = 0, 0.0
    for rank, doc in enumerate(ranking if k is None else ranking[:k], start=1):
        if doc in relevant:
            found += 1
            total += found / rank
    return total / len(relevant)


def metric_names(ks: Sequence[int]) -> list[str]:
    """The metrics `bienc eval` reports, in report order, for the recall cut-offs ``ks``."""
    return ["ndcg@10", "mrr@10", f"map@{max(ks)}", *(f"recall@{k}" for k in ks)]


def score_query(ranking: Sequence[str], judged: Mapping[str, int], ks: Sequence[int]) -> dict:
    """Every reported metric of one query, keyed as ``metric_names(ks)``."""
    scores = {
        "ndcg@10": ndcg_at_k(ranking, judged, 10),
        "mrr@10": mrr_at_k(ranking, judged, 10),
        f"map@{max(ks)}": average_precision(ranking, judged, max(ks)),
    }
    for k in ks:
        scores[f"recall@{k}"] = recall_at_k(ranking, judged, k)
    return scores


def mean_scores(per_query: Sequence[Mapping[str, float]], names: Sequence[str]) -> dict:
    """The mean of each metric over queries (0.0 for none)."""
    if not per_query:
        return {name: 0.0 for name in names}
    return {name: sum(q[name] for q in per_query) / len(per_query) for name in names}


# --------------------------------------------------------------------------------------------
# Loading queries and judgements.
# --------------------------------------------------------------------------------------------

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
    if not any(_relevant(qrels[q]) for q in runnable):
        raise UsageError(
            f"{qrels_table.path}: no judgement has a grade above 0 (nothing is relevant); "
            "check the grade column (--score-column)"
        )
    return EvalSet(
        queries=[EvalQuery(q, texts[q], metas.get(q, {})) for q in runnable],
        qrels={q: qrels[q] for q in runnable},
        unjudged=sum(1 for q in texts if q not in qrels),
        no_text=len(qrels) - len(runnable),
        no_relevant=sum(1 for q in runnable if not _relevant(qrels[q])),
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
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise UsageError(f"cannot read {path}: {str(exc).splitlines()[0]}") from exc
    return _Table(path, table.column_names, table.to_pylist())


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


# --------------------------------------------------------------------------------------------
# Matching judged corpus ids to the index's documents.
# --------------------------------------------------------------------------------------------

_DOC_COLUMNS = ("doc_id", "path", "row_id", "kind", "meta")


class DocumentMatcher:
    """Maps the corpus ids users write in judgements onto the index's documents.

    A table row is known by its row id (``--id-column``, else the 0-based row number), alone
    or as ``FILE#ROW`` with FILE written as for files below. A file is known by its path:
    absolute, relative to the folder it was indexed from, to that folder's parent, or to the
    current folder; by its file name; or by its file name without the extension. The most
    specific form that matches wins; a form that fits several documents (``README.md`` in
    two folders) matches none, and is reported as ambiguous.
    """

    def __init__(self, generation: store.Generation, cwd: str | None = None) -> None:
        import pyarrow.compute as pc

        table = generation.read_sidecar(columns=_DOC_COLUMNS, filters=pc.field("chunk") == 0)
        self.documents = {row["doc_id"]: row for row in table.to_pylist()}
        self._roots = _root_folders(generation.manifest["sources"]["roots"])
        self._levels: list[dict[str, set[str]]] = [defaultdict(set) for _ in range(4)]
        cwd = cwd or os.getcwd()
        for doc_id, row in self.documents.items():
            for level, key in self._keys(row, cwd):
                self._levels[level][key].add(doc_id)

    def _keys(self, row: dict[str, Any], cwd: str) -> Iterable[tuple[int, str]]:
        path, row_id = row["path"], row["row_id"]
        relatives = {os.path.relpath(path, base) for base in self._bases(path, cwd)}
        name = os.path.basename(path)
        if row_id is None:
            yield 0, path
            for relative in relatives:
                yield 1, relative
            yield 2, name
            yield 3, os.path.splitext(name)[0]
        else:
            yield 0, row["doc_id"]
            for relative in relatives:
                yield 1, f"{relative}#{row_id}"
            yield 2, row_id
            yield 2, f"{name}#{row_id}"
            yield 3, f"{os.path.splitext(name)[0]}#{row_id}"

    def _bases(self, path: str, cwd: str) -> Iterable[str]:
        for root in (*self._roots, cwd):
            if _inside(path, root):
                yield root
                if root != cwd:
                    yield os.path.dirname(root.rstrip(os.sep)) or os.sep

    def match(self, corpus_id: str) -> tuple[str | None, bool]:
        """The index document ``corpus_id`` names, and whether it was ambiguous."""
        key = corpus_id.strip()
        key = key[2:] if key.startswith("./") else key
        for level in self._levels:
            found = level.get(key)
            if found:
                return (next(iter(found)), False) if len(found) == 1 else (None, True)
        return None, False

    def relative(self, path: str) -> str:
        """``path`` relative to the deepest folder the index was built from, else absolute."""
        root = next((r for r in self._roots if _inside(path, r)), None)
        return os.path.relpath(path, root) if root else path

    def user_id(self, doc_id: str) -> str:
        """How a user names a document: its row id, or its path as ``relative`` gives it."""
        row = self.documents[doc_id]
        return row["row_id"] if row["row_id"] is not None else self.relative(row["path"])

    def top_folder(self, path: str) -> str:
        """The first folder below the indexed root ("." for files directly in it)."""
        relative = self.relative(path)
        if os.path.isabs(relative):
            return os.path.dirname(relative)
        parts = Path(relative).parts
        return parts[0] if len(parts) > 1 else "."

    def example_ids(self, n: int = 2) -> list[str]:
        return [self.user_id(doc_id) for doc_id in list(self.documents)[:n]]


def _inside(path: str, folder: str) -> bool:
    return path.startswith(folder.rstrip(os.sep) + os.sep)


def _root_folders(roots: Sequence[str]) -> list[str]:
    """The folders the index's sources were found under (a glob's fixed prefix; a file's folder)."""
    import glob as globlib

    folders = []
    for root in roots:
        if globlib.has_magic(root):
            parts = []
            for part in Path(root).parts:
                if globlib.has_magic(part):
                    break
                parts.append(part)
            folder = str(Path(*parts)) if parts else os.sep
        else:
            folder = root if os.path.isdir(root) else os.path.dirname(root)
        folders.append(os.path.normpath(folder))
    # Deepest first: a path relative to the innermost root is the one users write.
    return sorted(set(folders), key=len, reverse=True)


# --------------------------------------------------------------------------------------------
# The run.
# --------------------------------------------------------------------------------------------

DEFAULT_KS = (1, 10, 50, 100)
MISSING = "\0missing:"  # prefix of judged ids that match no document: relevant, never retrieved
NOT_IN_INDEX = "(not in index)"
NONE_GROUP = "(none)"
BUILTIN_DOC_COLUMNS = ("kind", "path", "folder")


@dataclass(frozen=True)
class EvalOptions:
    ks: tuple[int, ...] = DEFAULT_KS  # recall cut-offs; retrieval depth is max(ks, 10)
    by: tuple[str, ...] = ()  # breakdowns: COLUMN, query:COLUMN or doc:COLUMN
    ann: bool = False  # also search exactly and through HNSW at several ef
    target_recall: float = 0.99
    ef: int | None = None  # search breadth for the main run; default: the index's stored ef


@dataclass
class QueryResult:
    query_id: str
    text: str
    relevant: int  # relevant judgements (grade > 0), found in the index or not
    scores: dict[str, float]
    first_relevant_rank: int | None  # within the retrieved depth
    retrieved: list[str]  # corpus ids of the top 10 documents, as users name them
    missed: list[str]  # relevant corpus ids not retrieved within the depth, as judged
    groups: dict[str, list[str]] = field(default_factory=dict)  # --by column -> values


@dataclass
class Breakdown:
    column: str
    side: str  # "query" or "document"
    groups: list[dict[str, Any]]  # {"value", "queries", metric: mean ...}, biggest first


@dataclass
class AnnAudit:
    """Chunk-level recall of HNSW against exact search, over an ``ef`` ladder."""

    ks: list[int]
    target: float
    stored_ef: int
    curve: list[dict[str, Any]]  # {"ef": ef, "recall@k": ...} per ef tried
    min_ef: dict[str, int | None]  # "recall@k" -> smallest ef reaching the target
    stored_recall: dict[str, float]  # recall@k at the stored ef
    meets_target: bool
    query_ef: dict[str, int]  # "recall@k" -> the ef `bienc query -k k` searches documents with
    query_recall: dict[str, float]  # recall@k at that ef
    exact: dict[str, float]  # the document metrics with exact search instead of HNSW
    chunks: int
    seconds: float


@dataclass
class IndexEvaluation:
    index: str
    model: str
    documents: int
    chunks: int
    queries: int
    metrics: dict[str, float]
    per_query: list[QueryResult]
    breakdowns: list[Breakdown]
    ann: AnnAudit | None
    judged_not_in_index: int  # relevant judgements that match no document
    ambiguous_ids: int  # judged ids that match several documents
    unmatched_examples: list[str]
    seconds: float  # encoding and searching the queries

    def to_dict(self) -> dict[str, Any]:
        data = {
            "index": self.index,
            "model": self.model,
            "documents": self.documents,
            "chunks": self.chunks,
            "queries": self.queries,
            "metrics": _rounded(self.metrics),
            "judged_not_in_index": self.judged_not_in_index,
            "ambiguous_ids": self.ambiguous_ids,
            "unmatched_examples": self.unmatched_examples,
            "seconds": round(self.seconds, 2),
            "breakdowns": [
                {"by": b.column, "side": b.side, "groups": [_rounded(g) for g in b.groups]}
                for b in self.breakdowns
            ],
        }
        if self.ann is not None:
            ann = self.ann
            data["ann"] = {
                "target_recall": ann.target,
                "stored_ef": ann.stored_ef,
                "meets_target": ann.meets_target,
                "stored_recall": _rounded(ann.stored_recall),
                "min_ef": ann.min_ef,
                "query_ef": ann.query_ef,
                "query_recall": _rounded(ann.query_recall),
                "curve": [_rounded(point) for point in ann.curve],
                "exact_metrics": _rounded(ann.exact),
                "chunks": ann.chunks,
                "seconds": round(ann.seconds, 2),
            }
        return data


@dataclass
class EvalReport:
    evaluations: list[IndexEvaluation]
    metric_names: list[str]
    eval_set: EvalSet
    depth: int
    options: EvalOptions

    def to_dict(self) -> dict[str, Any]:
        s = self.eval_set
        return {
            "queries": len(s.queries),
            "judgements": sum(len(j) for j in s.qrels.values()),
            "ignored_unjudged_queries": s.unjudged,
            "ignored_queries_without_text": s.no_text,
            "queries_without_relevant": s.no_relevant,
            "depth": self.depth,
            "metrics": self.metric_names,
            "definitions": METRIC_DEFINITIONS,
            "files": s.sources,
            "indexes": [e.to_dict() for e in self.evaluations],
        }


METRIC_DEFINITIONS = {
    "ndcg@10": "pytrec_eval ndcg_cut_10: linear gains, ideal DCG over all relevant judgements",
    "mrr@10": "1/rank of the first relevant document in the top 10, else 0",
    "map@K": "pytrec_eval map_cut_K: AP over the top K, divided by all relevant judgements",
    "recall@k": "relevant documents in the top k / all relevant judgements",
}


def evaluate(
    index_roots: Sequence[Path],
    eval_set: EvalSet,
    options: EvalOptions = EvalOptions(),
    *,
    encoder_factory: query.EncoderFactory | None = None,
) -> EvalReport:
    """Score each index on the judged queries; one IndexEvaluation per index, in order."""
    ks = tuple(sorted(set(options.ks)))
    if not ks or ks[0] < 1:
        raise UsageError("-k takes positive cut-offs, e.g. -k 1,10,100")
    if not 0 < options.target_recall <= 1:
        raise UsageError("--target-recall must be in (0, 1]")
    names = metric_names(ks)
    depth = max(*ks, 10)
    evaluations = [
        _evaluate_index(Path(root), eval_set, options, ks, depth, names, encoder_factory)
        for root in index_roots
    ]
    return EvalReport(evaluations, names, eval_set, depth, options)


def _evaluate_index(
    root: Path,
    eval_set: EvalSet,
    options: EvalOptions,
    ks: tuple[int, ...],
    depth: int,
    names: list[str],
    encoder_factory: query.EncoderFactory | None,
) -> IndexEvaluation:
    generation = store.open_index(root)
    matcher = DocumentMatcher(generation)
    qrels, unmatched, ambiguous = _resolve(eval_set.qrels, matcher)
    if unmatched and unmatched == sum(len(_relevant(j)) for j in eval_set.qrels.values()):
        examples = ", ".join(repr(i) for i in _examples(eval_set.qrels, 2))
        ours = ", ".join(repr(i) for i in matcher.example_ids())
        raise UsageError(
            f"no judged document is in the index at {root} (judged ids look like {examples}; "
            f"the index's documents like {ours}): ids match table row ids (index tables with "
            "--id-column) or file paths relative to the indexed folder"
        )
    texts = list(dict.fromkeys(q.text for q in eval_set.queries))
    started = time.perf_counter()
    hits = query.search(
        root,
        texts,
        query.QueryOptions(k=depth, ef=options.ef),
        encoder_factory=encoder_factory,
    )
    seconds = time.perf_counter() - started
    ranking_of = {text: [h.doc_id for h in found] for text, found in zip(texts, hits)}

    per_query = []
    for q in eval_set.queries:
        ranking, judged = ranking_of[q.text], qrels[q.id]
        per_query.append(_query_result(q, ranking, judged, eval_set.qrels[q.id], ks, matcher))
    breakdowns = [
        _breakdown(spec, eval_set, per_query, qrels, matcher, names) for spec in options.by
    ]
    ann = None
    if options.ann:
        ann = _ann_audit(generation, eval_set, qrels, ks, depth, names, options, encoder_factory)
    manifest = generation.manifest
    return IndexEvaluation(
        index=str(root),
        model=manifest["model"]["name"],
        documents=manifest["counts"]["documents"],
        chunks=manifest["counts"]["chunks"],
        queries=len(per_query),
        metrics=mean_scores([r.scores for r in per_query], names),
        per_query=per_query,
        breakdowns=breakdowns,
        ann=ann,
        judged_not_in_index=unmatched,
        ambiguous_ids=ambiguous,
        unmatched_examples=_unmatched_examples(eval_set.qrels, matcher),
        seconds=seconds,
    )


def _resolve(
    qrels: Mapping[str, Mapping[str, int]], matcher: DocumentMatcher
) -> tuple[dict[str, dict[str, int]], int, int]:
    """Judgements keyed by index doc_id; relevant ids that match nothing stay, unretrievable."""
    resolved: dict[str, dict[str, int]] = {}
    unmatched = ambiguous = 0
    for query_id, judged in qrels.items():
        out: dict[str, int] = {}
        for corpus_id, grade in judged.items():
            doc_id, is_ambiguous = matcher.match(corpus_id)
            if doc_id is None:
                ambiguous += is_ambiguous
                if grade > 0:
                    unmatched += 1
                doc_id = MISSING + corpus_id
            out[doc_id] = max(grade, out.get(doc_id, grade))
        resolved[query_id] = out
    return resolved, unmatched, ambiguous


def _examples(qrels: Mapping[str, Mapping[str, int]], n: int) -> list[str]:
    out: list[str] = []
    for judged in qrels.values():
        out.extend(d for d, g in judged.items() if g > 0 and d not in out)
        if len(out) >= n:
            break
    return out[:n]


def _unmatched_examples(qrels, matcher: DocumentMatcher, n: int = 5) -> list[str]:
    out: list[str] = []
    for judged in qrels.values():
        for corpus_id, grade in judged.items():
            if grade > 0 and corpus_id not in out and matcher.match(corpus_id)[0] is None:
                out.append(corpus_id)
                if len(out) >= n:
                    return out
    return out


def _query_result(q, ranking, judged, as_judged, ks, matcher) -> QueryResult:
    relevant = _relevant(judged)
    first = next((rank for rank, d in enumerate(ranking, 1) if d in relevant), None)
    retrieved_set = set(ranking)
    missed = []
    for corpus_id, grade in as_judged.items():
        doc_id = matcher.match(corpus_id)[0]
        if grade > 0 and (doc_id is None or doc_id not in retrieved_set):
            missed.append(corpus_id)
    return QueryResult(
        query_id=q.id,
        text=q.text,
        relevant=len(relevant),
        scores=score_query(ranking, judged, ks),
        first_relevant_rank=first,
        retrieved=[matcher.user_id(d) for d in ranking[:10]],
        missed=missed,
    )


# --------------------------------------------------------------------------------------------
# --by: figures per value of a query or document column.
# --------------------------------------------------------------------------------------------


def _breakdown(spec, eval_set, per_query, qrels, matcher, names) -> Breakdown:
    side, column = _by_side(spec, eval_set, matcher)
    groups: dict[str, list[QueryResult]] = defaultdict(list)
    for q, result in zip(eval_set.queries, per_query):
        if side == "query":
            values = _values(_lookup(q.meta, column))
        else:
            values = []
            for doc_id, grade in qrels[q.id].items():
                if grade > 0:
                    row = matcher.documents.get(doc_id)
                    found = _doc_value(row, column, matcher) if row else [NOT_IN_INDEX]
                    values.extend(v for v in found if v not in values)
            values = values or [NONE_GROUP]
        result.groups[spec] = values
        for value in values:
            groups[value].append(result)
    rows = [
        {"value": value, "queries": len(results), **mean_scores([r.scores for r in results], names)}
        for value, results in groups.items()
    ]
    rows.sort(key=lambda g: (-g["queries"], g["value"]))
    return Breakdown(column=column, side=side, groups=rows)


def _by_side(spec: str, eval_set: EvalSet, matcher: DocumentMatcher) -> tuple[str, str]:
    """Which side ``spec`` names: ``query:COL``, ``doc:COL``, else the queries file's columns
    first, then the documents' metadata and the built-ins kind, path and folder."""
    prefix, sep, rest = spec.partition(":")
    if sep and prefix in ("query", "doc", "document") and rest:
        return ("query" if prefix == "query" else "document"), rest
    if any(_lookup(q.meta, spec) is not None for q in eval_set.queries):
        return "query", spec
    if spec in BUILTIN_DOC_COLUMNS:
        return "document", spec
    for row in matcher.documents.values():
        if row["meta"] and spec in json.loads(row["meta"]):
            return "document", spec
    query_columns = sorted({c for q in eval_set.queries for c in q.meta})
    doc_columns = sorted(
        {c for row in matcher.documents.values() if row["meta"] for c in json.loads(row["meta"])}
    )
    raise UsageError(
        f"--by {spec}: no such column in the queries ({', '.join(query_columns) or 'none'}) or "
        f"the documents' metadata ({', '.join(doc_columns + list(BUILTIN_DOC_COLUMNS))})"
    )


def _lookup(meta: Mapping[str, Any], column: str) -> Any:
    if column in meta:
        return meta[column]
    nested = meta.get("metadata")  # BEIR keeps extra query fields under "metadata"
    return nested.get(column) if isinstance(nested, dict) else None


def _values(value: Any) -> list[str]:
    if value is None or value == "":
        return [NONE_GROUP]
    if isinstance(value, list):
        return list(dict.fromkeys(_group_text(v) for v in value)) or [NONE_GROUP]
    return [_group_text(value)]


def _group_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _doc_value(row: Mapping[str, Any], column: str, matcher: DocumentMatcher) -> list[str]:
    if column == "kind":
        return [row["kind"]]
    if column == "path":
        return [matcher.relative(row["path"])]
    if column == "folder":
        return [matcher.top_folder(row["path"])]
    return _values(json.loads(row["meta"]).get(column) if row["meta"] else None)


# --------------------------------------------------------------------------------------------
# --ann: exact search against HNSW.
# --------------------------------------------------------------------------------------------

EF_LADDER = (10, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)


def ann_recall(exact_scores: np.ndarray, found_scores: np.ndarray, k: int) -> float:
    """Mean over queries of the share of the approximate top ``k`` that belongs to the exact one.

    Rows hold cosine similarities, best first. A result counts when it scores at least the
    exact k-th similarity (less 1e-5), as ann-benchmarks counts by distance threshold: two
    identical chunks (a copied file) are interchangeable, not a miss.
    """
    if len(exact_scores) == 0 or k == 0:
        return 1.0
    threshold = exact_scores[:, k - 1 : k] - 1e-5
    return float((found_scores[:, :k] >= threshold).sum() / (k * len(exact_scores)))


def exact_top(
    query_vectors: np.ndarray, labels: np.ndarray, matrix: np.ndarray, k: int, batch: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """Labels and cosine similarities of the ``k`` nearest chunks by brute force (unit vectors)."""
    import numpy as np

    k = min(k, len(labels))
    out_labels = np.zeros((len(query_vectors), k), dtype=np.uint64)
    out_scores = np.zeros((len(query_vectors), k), dtype=np.float32)
    for start in range(0, len(query_vectors), batch):
        scores = query_vectors[start : start + batch] @ matrix.T
        if k < scores.shape[1]:
            part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        else:
            part = np.tile(np.arange(scores.shape[1]), (len(scores), 1))
        part_scores = np.take_along_axis(scores, part, axis=1)
        order = np.argsort(-part_scores, axis=1, kind="stable")
        chosen = np.take_along_axis(part, order, axis=1)
        out_labels[start : start + batch] = labels[chosen]
        out_scores[start : start + batch] = np.take_along_axis(part_scores, order, axis=1)
    return out_labels, out_scores


def _ann_audit(generation, eval_set, qrels, ks, depth, names, options, encoder_factory):
    started = time.perf_counter()
    texts = list(dict.fromkeys(q.text for q in eval_set.queries))
    factory = encoder_factory or query.load_encoder  # looked up now: tests patch it there
    vectors = factory(query.index_model(generation)).encode(texts)
    labels, matrix = store.chunk_vectors(generation)
    live = len(labels)
    ks_live = [k for k in ks if k <= live] or [live]
    fetch = min(live, max(4 * depth, 50))
    exact_labels, exact_scores = exact_top(vectors, labels, matrix, max(fetch, max(ks_live)))

    index = generation.load_hnsw()
    stored_ef = int(generation.manifest["hnsw"]["ef"])
    # Up to the first ef that covers every chunk (a search that wide is exhaustive).
    ladder = sorted({*(ef for ef in EF_LADDER if ef < live), stored_ef})
    ladder = sorted({*ladder, next((ef for ef in EF_LADDER if ef >= live), EF_LADDER[-1])})
    curve, min_ef = [], {f"recall@{k}": None for k in ks_live}
    stored_recall: dict[str, float] = {}
    for ef in ladder:
        point: dict[str, Any] = {"ef": ef}
        for k in ks_live:
            index.set_ef(ef)  # knn raises it to k when lower, as hnswlib itself does
            _, found = store.knn(index, vectors, k, live=live)
            recall = ann_recall(exact_scores, found, k)
            point[f"recall@{k}"] = recall
            if recall >= options.target_recall and min_ef[f"recall@{k}"] is None:
                min_ef[f"recall@{k}"] = max(ef, k)
            if ef == stored_ef:
                stored_recall[f"recall@{k}"] = recall
        curve.append(point)
        if all(point[f"recall@{k}"] >= 1.0 for k in ks_live) and ef >= stored_ef:
            break
    # What `bienc query -k K` gets: for document results it fetches max(4K, 50) chunks and
    # searches with ef at least that, so it may do better than the stored ef alone.
    query_ef, query_recall = {}, {}
    for k in ks_live:
        ef = max(stored_ef, min(live, max(4 * k, 50)))
        index.set_ef(ef)
        _, found = store.knn(index, vectors, k, live=live)
        query_ef[f"recall@{k}"], query_recall[f"recall@{k}"] = (
            ef,
            ann_recall(exact_scores, found, k),
        )

    # Document metrics with exact search: the ceiling HNSW is measured against.
    doc_of = _label_documents(generation)
    rankings = []
    for vector, row in zip(vectors, exact_labels):
        ranking = list(dict.fromkeys(doc_of[int(label)] for label in row))
        if len(ranking) < depth and len(row) < live:  # many chunks of few documents
            everything, _ = exact_top(vector[None, :], labels, matrix, live)
            ranking = list(dict.fromkeys(doc_of[int(label)] for label in everything[0]))
        rankings.append(ranking[:depth])
    del matrix
    ranking_of = dict(zip(texts, rankings))
    exact = mean_scores(
        [score_query(ranking_of[q.text], qrels[q.id], ks) for q in eval_set.queries], names
    )
    return AnnAudit(
        ks=ks_live,
        target=options.target_recall,
        stored_ef=stored_ef,
        curve=curve,
        min_ef=min_ef,
        stored_recall=stored_recall,
        meets_target=all(v >= options.target_recall for v in stored_recall.values()),
        query_ef=query_ef,
        query_recall=query_recall,
        exact=exact,
        chunks=live,
        seconds=time.perf_counter() - started,
    )


def _label_documents(generation: store.Generation) -> dict[int, str]:
    table = generation.read_sidecar(columns=("label", "doc_id"))
    return dict(zip(table["label"].to_pylist(), table["doc_id"].to_pylist()))


def _rounded(data: Mapping[str, Any], digits: int = 5) -> dict[str, Any]:
    return {k: round(v, digits) if isinstance(v, float) else v for k, v in data.items()}
