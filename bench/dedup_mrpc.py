#!/usr/bin/env python3
"""Dedup quality on MRPC: each sentence a document, each labelled pair a question.

MRPC's test split (``../shared/data/mrpc``) holds 1,725 sentence pairs, 1,147 of them
paraphrases. Its 3,395 sentences (by id) are written as a JSONL table, indexed once with the
real model (cached in bench/out/mrpc/), and `bienc dedup --index` is run on it. Reported:

- average precision of bienc's similarity scores over the labelled pairs, and the best F1,
  beside the figures ../shared/data/README.md quotes for plain sentence-transformers cosine
  (AP 0.837, best F1 0.818 at cosine 0.637; quoted, not measured by this script);
- precision, recall and F1 of bienc's duplicate decision, at the default threshold and a few
  others: a labelled pair counts as "duplicate" when `bienc dedup --pairs` reports it (found
  through the HNSW graph, so misses of the graph count against recall), and separately when
  `bienc dedup` puts the two sentences in one group as keeper and member.

MRPC pairs are paraphrase-or-not on the same topic, often differing by one clause: a dedup
threshold should favour precision there, not F1.

    python bench/dedup_mrpc.py [--reuse] [--thresholds 0.80,0.85,0.88,0.90,0.95]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# The sentence-transformers figures printed beside bienc's are not measured here.
QUOTED = ", quoted from ../shared/data/README.md"
sys.path.insert(0, str(REPO))

MRPC = REPO.parent / "shared" / "data" / "mrpc" / "msr_paraphrase_test.txt"
OUT = REPO / "bench" / "out" / "mrpc"


def labelled_pairs() -> tuple[list[tuple[int, str, str]], dict[str, str]]:
    """(label, id1, id2) per pair, and the text of each sentence id."""
    lines = MRPC.read_text(encoding="utf-8-sig").splitlines()[1:]
    pairs, texts = [], {}
    for line in lines:
        quality, id1, id2, s1, s2 = line.split("\t")
        pairs.append((int(quality), id1, id2))
        texts.setdefault(id1, s1)
        texts.setdefault(id2, s2)
    return pairs, texts


def bienc(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "bienc_cli", *args]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode not in (0, 1):
        sys.exit(f"{' '.join(cmd)} failed ({result.returncode}): {result.stderr}")
    return result


def prf(predicted: list[bool], labels: list[int]) -> tuple[int, float, float, float]:
    tp = sum(p and y == 1 for p, y in zip(predicted, labels))
    n = sum(predicted)
    precision = tp / n if n else 1.0
    recall = tp / sum(labels)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return n, precision, recall, f1


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reuse", action="store_true", help="use the cached index")
    parser.add_argument("--thresholds", default="0.80,0.85,0.88,0.90,0.92,0.95")
    args = parser.parse_args()
    import numpy as np
    from sklearn.metrics import average_precision_score, precision_recall_curve

    from bienc_cli.dedup import detect as dedup
    from bienc_cli.store import generations as store

    pairs, texts = labelled_pairs()
    table, index = OUT / "sentences.jsonl", OUT / "index"
    if not (args.reuse and (index / "CURRENT").exists()):
        OUT.mkdir(parents=True, exist_ok=True)
        with open(table, "w", encoding="utf-8") as fh:
            for sentence_id, text in texts.items():
                fh.write(json.dumps({"id": sentence_id, "text": text}) + "\n")
        bienc("index", str(table), "--index", str(index), "--rebuild", "--id-column", "id",
              "--text-column", "text", "--quiet")  # fmt: skip

    # Similarity scores: the document vectors bienc compares (here one chunk per sentence).
    docs = store.document_vectors(store.open_index(index), columns=["row_id"])
    row = {r: i for i, r in enumerate(docs.table["row_id"].to_pylist())}
    labels = [y for y, _, _ in pairs]
    scores = [float(docs.vectors[row[a]] @ docs.vectors[row[b]]) for _, a, b in pairs]
    ap = average_precision_score(labels, scores)
    precision, recall, cut = precision_recall_curve(labels, scores)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    best = int(np.argmax(f1[:-1]))
    print(f"MRPC test: {len(pairs)} pairs ({sum(labels)} paraphrases), {len(texts)} sentences")
    print(f"average precision of bienc's similarities: {ap:.4f} (sentence-transformers: 0.837{QUOTED})")  # fmt: skip
    print(f"best F1 {f1[best]:.4f} at similarity {cut[best]:.3f} (sentence-transformers: 0.818 at 0.637{QUOTED})")  # fmt: skip
    print()

    # Decisions: the pairs `bienc dedup` reports, by text (exact copies share their pairs).
    def text_pair(a: str, b: str) -> frozenset[str]:
        return frozenset((texts[a], texts[b]))

    rows_of = {f"{table.resolve()}#{sentence_id}": sentence_id for sentence_id in texts}
    print(f"{'threshold':>9}  {'pairs: n':>8} {'P':>6} {'R':>6} {'F1':>6}   "
          f"{'groups: n':>9} {'P':>6} {'R':>6} {'F1':>6}")  # fmt: skip
    thresholds = [float(t) for t in args.thresholds.split(",")]
    if dedup.DEFAULT_THRESHOLD not in thresholds:
        thresholds = sorted([*thresholds, dedup.DEFAULT_THRESHOLD])
    for threshold in thresholds:
        found = set()
        out = bienc("dedup", "--index", str(index), "-t", str(threshold), "--pairs", "-f", "jsonl")
        for line in out.stdout.splitlines():
            record = json.loads(line)
            found.add(text_pair(rows_of[record["a"]], rows_of[record["b"]]))
        grouped = set()
        out = bienc("dedup", "--index", str(index), "-t", str(threshold), "-f", "jsonl")
        for line in out.stdout.splitlines():
            group = json.loads(line)
            keeper = rows_of[group["keeper"]["doc_id"]]
            for member in group["members"]:
                grouped.add(text_pair(keeper, rows_of[member["doc_id"]]))
        by_pairs = prf([text_pair(a, b) in found for _, a, b in pairs], labels)
        by_groups = prf([text_pair(a, b) in grouped for _, a, b in pairs], labels)
        mark = "  (default)" if threshold == dedup.DEFAULT_THRESHOLD else ""
        print(
            f"{threshold:9.2f}  {by_pairs[0]:8d} {by_pairs[1]:6.3f} {by_pairs[2]:6.3f} "
            f"{by_pairs[3]:6.3f}   {by_groups[0]:9d} {by_groups[1]:6.3f} {by_groups[2]:6.3f} "
            f"{by_groups[3]:6.3f}{mark}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
