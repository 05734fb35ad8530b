"""`bienc eval`: retrieval quality on the user's own judged queries, and an audit of the HNSW graph.

``evaluate`` takes an ``EvalSet`` (see ``judgements``), runs its queries through
``query.search`` (the very search `bienc query` does), maps the judged corpus ids onto the
index's documents (see ``matching``), and scores the rankings (see ``metrics``), per value of
a column with ``by`` (see ``breakdown``); with ``ann`` it also searches every query exactly
and through HNSW at several ``ef``, to say how much the approximate graph loses (see ``ann``).
The records it returns are in ``records``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from bienc_cli.errors import UsageError
from bienc_cli.evaluation.ann import ann_audit
from bienc_cli.evaluation.breakdown import breakdown
from bienc_cli.evaluation.judgements import EvalSet
from bienc_cli.evaluation.matching import DocumentMatcher
from bienc_cli.evaluation.metrics import mean_scores, metric_names, relevant_ids, score_query
from bienc_cli.evaluation.records import EvalOptions, EvalReport, IndexEvaluation, QueryResult
from bienc_cli.query import search as query
from bienc_cli.store import generations as store

MISSING = "\0missing:"  # prefix of judged ids that match no document: relevant, never retrieved


def evaluate(
    index_roots: Sequence[Path],
    eval_set: EvalSet,
    options: EvalOptions,
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
    if unmatched and unmatched == sum(len(relevant_ids(j)) for j in eval_set.qrels.values()):
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
        breakdown(spec, eval_set, per_query, qrels, matcher, names) for spec in options.by
    ]
    ann = None
    if options.ann:
        ann = ann_audit(generation, eval_set, qrels, ks, depth, names, options, encoder_factory)
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
    relevant = relevant_ids(judged)
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
