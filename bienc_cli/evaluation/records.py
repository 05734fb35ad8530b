"""What `bienc eval` reports: its options and the records of its run, per query and per index,
with the JSON shape ``--format json`` writes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bienc_cli.evaluation.judgements import EvalSet

DEFAULT_KS = (1, 10, 50, 100)


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


def _rounded(data: Mapping[str, Any], digits: int = 5) -> dict[str, Any]:
    return {k: round(v, digits) if isinstance(v, float) else v for k, v in data.items()}
