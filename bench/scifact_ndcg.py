#!/usr/bin/env python3
"""Retrieval quality of bienc on BEIR SciFact, through the real CLI.

Indexes the SciFact corpus as a table (title and text, id `_id`), runs the 300 test queries
through `bienc query` in one process (queries on stdin), and computes nDCG@10 the way MTEB
does (pytrec_eval's ndcg_cut_10: linear gains from the qrels, ideal DCG over all judged
documents). The published figure for all-MiniLM-L6-v2 is 0.64508.

    python bench/scifact_ndcg.py [--data ../shared/data/scifact] [--index bench/out/scifact] [--reuse]
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def ndcg_at_k(ranked: list[str], relevant: dict[str, int], k: int = 10) -> float:
    dcg = sum(relevant.get(doc, 0) / math.log2(i + 2) for i, doc in enumerate(ranked[:k]))
    ideal = sorted(relevant.values(), reverse=True)[:k]
    idcg = sum(gain / math.log2(i + 2) for i, gain in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def recall_at_k(ranked: list[str], relevant: dict[str, int], k: int) -> float:
    positives = {d for d, g in relevant.items() if g > 0}
    return len(positives & set(ranked[:k])) / len(positives) if positives else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "scifact"))
    parser.add_argument("--index", default=str(REPO / "bench" / "out" / "scifact"))
    parser.add_argument(
        "--reuse", action="store_true", help="query an existing index (no re-index)"
    )
    parser.add_argument("-k", type=int, default=100)
    parser.add_argument(
        "--bienc", default=f"{sys.executable} -m bienc_cli", help="how to run bienc"
    )
    args = parser.parse_args()
    data = Path(args.data)
    bienc = args.bienc.split()

    if not args.reuse:
        started = time.perf_counter()
        subprocess.run(
            [*bienc, "index", str(data / "corpus.jsonl"), "--index", args.index, "--rebuild",
             "--text-column", "title", "--text-column", "text", "--id-column", "_id", "--quiet"],
            check=True,
        )  # fmt: skip
        print(f"indexed in {time.perf_counter() - started:.1f}s", file=sys.stderr)

    qrels: dict[str, dict[str, int]] = defaultdict(dict)
    for line in (data / "qrels" / "test.tsv").read_text().splitlines()[1:]:
        query_id, doc_id, score = line.split("\t")
        qrels[query_id][doc_id] = int(score)
    texts = {}
    for line in (data / "queries.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record["_id"] in qrels:
            texts[record["_id"]] = " ".join(record["text"].split())
    by_text = defaultdict(list)
    for query_id, text in texts.items():
        by_text[text].append(query_id)

    started = time.perf_counter()
    result = subprocess.run(
        [*bienc, "query", "-", "--index", args.index, "-k", str(args.k), "-f", "jsonl"],
        input="\n".join(by_text) + "\n", capture_output=True, text=True, check=True,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    ranked: dict[str, list[str]] = defaultdict(list)
    for line in result.stdout.splitlines():
        hit = json.loads(line)
        for query_id in by_text[hit["query"]]:
            ranked[query_id].append(hit["row_id"])

    ndcg = [ndcg_at_k(ranked[q], qrels[q]) for q in qrels]
    r10 = [recall_at_k(ranked[q], qrels[q], 10) for q in qrels]
    r100 = [recall_at_k(ranked[q], qrels[q], 100) for q in qrels]
    info = json.loads(subprocess.run([*bienc, "info", "--index", args.index, "--json", "--no-stale"],
                                     capture_output=True, text=True, check=True).stdout)  # fmt: skip
    print(
        f"SciFact test: {len(qrels)} queries, {info['documents']} documents, {info['chunks']} chunks"
    )
    print(f"nDCG@10   {sum(ndcg) / len(ndcg):.5f}   (published for all-MiniLM-L6-v2: 0.64508)")
    print(f"Recall@10 {sum(r10) / len(r10):.5f}")
    print(f"Recall@100 {sum(r100) / len(r100):.5f}")
    print(f"queries: {seconds:.1f}s for {len(by_text)} in one process")
    return 0


if __name__ == "__main__":
    sys.exit(main())
