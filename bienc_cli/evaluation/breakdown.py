"""`bienc eval --by`: the metrics per value of a query column or of a document column (the
documents' metadata, or the built-ins kind, path and folder)."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from bienc_cli.errors import UsageError
from bienc_cli.evaluation.judgements import EvalSet
from bienc_cli.evaluation.matching import DocumentMatcher
from bienc_cli.evaluation.metrics import mean_scores
from bienc_cli.evaluation.records import Breakdown, QueryResult

NOT_IN_INDEX = "(not in index)"
NONE_GROUP = "(none)"
BUILTIN_DOC_COLUMNS = ("kind", "path", "folder")


def breakdown(spec, eval_set, per_query, qrels, matcher, names) -> Breakdown:
    """The metrics of ``per_query`` grouped by the values of the column ``spec`` names."""
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
