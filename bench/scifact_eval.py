#!/usr/bin/env python3
"""Reproduce the published SciFact figure for all-MiniLM-L6-v2 with `bienc eval`.

Indexes BEIR SciFact (5,183 abstracts) as a table, title and text joined, id `_id`, unless
the index is already there; then runs, through the real CLI:

    bienc eval --index INDEX --queries scifact/queries.jsonl --qrels scifact/qrels/test.tsv --ann

and prints bienc's figures beside MTEB's published ones (mteb-all-MiniLM-L6-v2.json, kept
with the data). Exits 1 if nDCG@10 falls below 0.645 (published: 0.64508).

--aggregations also scores, from the same stored chunk vectors and by exact search, three
ways of turning chunks into a document ranking: the best chunk (what `bienc query` does),
the first chunk only (what MTEB's truncation at 256 tokens amounts to), and the
token-weighted mean of the chunk vectors (one vector per document). Nothing is re-encoded.

    python bench/scifact_eval.py [--data ../shared/data/scifact] [--index bench/out/scifact]
                                 [--reindex [--backend onnx-int8]] [--aggregations]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
PUBLISHED_NDCG = 0.64508
THRESHOLD = 0.645


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "scifact"))
    parser.add_argument("--index", default=str(REPO / "bench" / "out" / "scifact"))
    parser.add_argument("--reindex", action="store_true", help="rebuild the index first")
    parser.add_argument("--aggregations", action="store_true", help="compare chunk aggregations")
    parser.add_argument("--backend", help="encoder for a (re)index, e.g. onnx-int8")
    parser.add_argument("--bienc", default=f"{sys.executable} -m bienc_cli", help="how to run it")
    args = parser.parse_args()
    data, index = Path(args.data), Path(args.index)
    bienc = args.bienc.split()

    if args.reindex or not (index / "CURRENT").exists():
        started = time.perf_counter()
        subprocess.run(
            [*bienc, "index", str(data / "corpus.jsonl"), "--index", str(index), "--rebuild",
             "--text-column", "title", "--text-column", "text", "--id-column", "_id", "--quiet",
             *(["--backend", args.backend] if args.backend else [])],
            check=True,
        )  # fmt: skip
        print(f"indexed in {time.perf_counter() - started:.0f}s", file=sys.stderr)

    command = [*bienc, "eval", "--index", str(index), "--queries", str(data / "queries.jsonl"),
               "--qrels", str(data / "qrels" / "test.tsv"), "--ann", "-f", "json"]  # fmt: skip
    print("$ " + " ".join(["bienc", *command[len(bienc) :]]))
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    sys.stderr.write(result.stderr)
    if result.returncode != 0:
        return result.returncode
    report = json.loads(result.stdout)
    figures = report["indexes"][0]
    published = _published(data)

    print(
        f"SciFact test: {report['queries']} queries, {figures['documents']} documents, "
        f"{figures['chunks']} chunks; `bienc eval` took {seconds:.0f}s"
    )
    print(f"{'metric':<12}{'bienc (HNSW)':>14}{'bienc (exact)':>15}{'MTEB':>10}")
    for name in report["metrics"]:
        mteb = published.get(name.replace("@", "_at_"))
        mteb_text = f"{mteb:.5f}" if mteb is not None else "-"
        exact = figures["ann"]["exact_metrics"][name]
        print(f"{name:<12}{figures['metrics'][name]:>14.5f}{exact:>15.5f}{mteb_text:>10}")
    ann = figures["ann"]
    print(
        f"HNSW: stored ef {ann['stored_ef']}, chunk recall {ann['stored_recall']}, "
        f"smallest ef for {ann['target_recall']}: {ann['min_ef']}"
    )
    if args.aggregations:
        _aggregations(index, data)
    ndcg = figures["metrics"]["ndcg@10"]
    verdict = "reaches" if ndcg >= THRESHOLD else "falls below"
    print(f"nDCG@10 {ndcg:.5f} {verdict} {THRESHOLD} (published {PUBLISHED_NDCG})")
    return 0 if ndcg >= THRESHOLD else 1


def _published(data: Path) -> dict[str, float]:
    path = data / "mteb-all-MiniLM-L6-v2.json"
    if not path.exists():
        return {"ndcg_at_10": PUBLISHED_NDCG}
    return json.loads(path.read_text())["scores"]["test"][0]


def _aggregations(index: Path, data: Path) -> None:
    """nDCG@10 and recall@100 of three chunk-to-document rules, by exact search."""
    import numpy as np

    from bienc_cli.evaluation import judgements as judgements
    from bienc_cli.evaluation import metrics as metrics
    from bienc_cli.query import search as query
    from bienc_cli.store import generations as store

    generation = store.open_index(index)
    eval_set = judgements.load_eval_set(data / "queries.jsonl", data / "qrels" / "test.tsv")
    texts = [q.text for q in eval_set.queries]
    vectors = query.load_encoder(query.index_model(generation)).encode(texts)
    labels, matrix = store.chunk_vectors(generation)
    sidecar = generation.read_sidecar(columns=("label", "row_id", "chunk", "n_chunks")).to_pydict()
    row_of = dict(zip(sidecar["label"], sidecar["row_id"]))
    first = {label for label, chunk in zip(sidecar["label"], sidecar["chunk"]) if chunk == 0}
    scores = vectors @ matrix.T

    def best_chunk(keep: np.ndarray) -> list[list[str]]:
        rankings = []
        for row in scores:
            order = np.argsort(-np.where(keep, row, -np.inf))
            ranking = list(dict.fromkeys(row_of[int(labels[j])] for j in order[:2000] if keep[j]))
            rankings.append(ranking[:100])
        return rankings

    documents = store.document_vectors(generation, columns=("row_id",))
    doc_rows = documents.table["row_id"].to_pylist()
    mean_scores = vectors @ documents.vectors.T
    rules = {
        "best chunk (bienc)": best_chunk(np.ones(len(labels), dtype=bool)),
        "first chunk only": best_chunk(np.array([int(label) in first for label in labels])),
        "mean of chunks": [[doc_rows[j] for j in np.argsort(-row)[:100]] for row in mean_scores],
    }
    multi = sum(1 for c, n in zip(sidecar["chunk"], sidecar["n_chunks"]) if c == 0 and n > 1)
    print(f"chunk aggregation, exact search ({multi} of {len(doc_rows)} documents have >1 chunk):")
    for name, rankings in rules.items():
        per_query = [
            metrics.score_query(r, eval_set.qrels[q.id], (10, 100))
            for r, q in zip(rankings, eval_set.queries)
        ]
        means = metrics.mean_scores(per_query, ["ndcg@10", "recall@100"])
        print(f"  {name:<20} nDCG@10 {means['ndcg@10']:.5f}  recall@100 {means['recall@100']:.5f}")


if __name__ == "__main__":
    sys.exit(main())
