"""`bienc eval`: retrieval quality on the user's own judged queries, and an audit of the HNSW graph.

``evaluate`` takes an ``EvalSet`` (see ``judgements``), runs its queries through
``query.search`` (the very search `bienc query` does), maps the judged corpus ids onto the
index's documents, and scores the rankings (see ``metrics``); with ``ann`` it also searches
every query exactly (brute force over the stored vectors) and through HNSW at several
``ef``, to say how much the approximate graph loses.
"""

from __future__ import annotations

import json
import os
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bienc_cli.errors import UsageError
from bienc_cli.evaluation.judgements import EvalSet
from bienc_cli.evaluation.metrics import mean_scores, metric_names, relevant_ids, score_query
from bienc_cli.query import search as query
from bienc_cli.store import generations as store
from bienc_cli.store import graph
from bienc_cli.util.paths import is_under

if TYPE_CHECKING:
    import numpy as np

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
            if is_under(path, root, strictly=True):
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
        root = next((r for r in self._roots if is_under(path, r, strictly=True)), None)
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
    # The graph is measured against its own items: one per distinct vector (identical
    # chunks share one), so a copied file does not count as the graph's miss.
    items = generation.items()
    graph_live = len(items[0])
    ks_live = [k for k in ks if k <= graph_live] or [graph_live]
    fetch = min(live, max(4 * depth, 50))
    exact_labels, _ = exact_top(vectors, labels, matrix, max(fetch, max(ks_live)))
    _, exact_scores = exact_top(vectors, *items, max(ks_live))
    del items

    index = generation.load_hnsw()
    stored_ef = int(generation.manifest["hnsw"]["ef"])
    # Up to the first ef that covers every item (a search that wide is exhaustive).
    ladder = sorted({*(ef for ef in EF_LADDER if ef < graph_live), stored_ef})
    ladder = sorted({*ladder, next((ef for ef in EF_LADDER if ef >= graph_live), EF_LADDER[-1])})
    curve, min_ef = [], {f"recall@{k}": None for k in ks_live}
    stored_recall: dict[str, float] = {}
    for ef in ladder:
        point: dict[str, Any] = {"ef": ef}
        for k in ks_live:
            index.set_ef(ef)  # knn raises it to k when lower, as hnswlib itself does
            # the graph's own answers: no widening, no exact fallback to flatter it
            _, found = graph.knn(index, vectors, k, live=graph_live, fallback=False)
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
        ef = max(stored_ef, min(graph_live, max(4 * k, 50)))
        index.set_ef(ef)
        _, found = graph.knn(index, vectors, k, live=graph_live, fallback=False)
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
