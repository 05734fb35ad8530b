"""Retrieval metrics: pure functions over one ranking and one query's judgements.

``ranking``: corpus ids, best first, no repeats. ``judged``: corpus id -> graded relevance;
a grade > 0 means relevant, 0 or less means judged not relevant (as trec_eval's default
relevance level of 1). A query with no relevant document scores 0 on every metric, as in
trec_eval. The figures reproduce pytrec_eval/trec_eval, as MTEB reports them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence


def relevant_ids(judged: Mapping[str, int]) -> set[str]:
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
    relevant = relevant_ids(judged)
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
    relevant = relevant_ids(judged)
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
