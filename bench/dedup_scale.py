#!/usr/bin/env python3
"""How the dedup step scales: detection time on synthetic document vectors, n up to 100,000.

The vectors stand in for what the encoder gives (384-d, unit length), with structure like a
real corpus: documents gather around topics (two documents of a topic have cosine ~0.64),
5% of them have a planted near-copy (cosine 0.88 to 0.99 to its original), and 1% an exact
copy (same text hash). What is timed is ``dedup.detect``: the HNSW graph over the distinct
texts, the neighbour search, the exact-copy classes, the pairs and the groups, i.e. all of
`bienc dedup` after encoding.

Each size runs ``--runs`` times; the median wall time is reported, with the CPU time (all
threads; it does not grow when other processes compete for the cores, wall time does) and
the CPU time per document, and the growth exponent of the wall time between consecutive
sizes (time ~ n^e: e a little above 1 for n log n, 2 for all pairs). The load average is printed beside each size. Recall is checked
against exact search: every planted pair, and every pair at or above the threshold among
``--sample`` random documents compared with all others by brute force. For contrast, the
time to compare all pairs by brute force (blockwise matrix products, numpy) is given up to
``--all-pairs-max`` documents.

    python bench/dedup_scale.py [--sizes 12500,25000,50000,100000] [--runs 3]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bienc_cli.dedup import detect as dedup  # noqa: E402


def synthetic(n: int, dim: int = 384, seed: int = 0):
    """Unit vectors, records, and the planted (original, copy) pairs."""
    rng = np.random.default_rng(seed)
    topics = max(10, n // 50)
    centres = rng.standard_normal((topics, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)

    def around(base: np.ndarray, cos: np.ndarray) -> np.ndarray:
        noise = rng.standard_normal(base.shape).astype(np.float32)
        noise -= (noise * base).sum(axis=1, keepdims=True) * base  # orthogonal to base
        noise /= np.linalg.norm(noise, axis=1, keepdims=True)
        out = base * cos[:, None] + noise * np.sqrt(1 - cos**2)[:, None]
        return (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32)

    vectors = around(centres[rng.integers(0, topics, n)], np.full(n, 0.8, np.float32))
    hashes = [f"h{i}" for i in range(n)]
    copies = rng.choice(n, size=n // 20 + n // 100, replace=False)
    near, exact = copies[: n // 20], copies[n // 20 :]
    originals = rng.choice(np.setdiff1d(np.arange(n), copies), size=len(copies), replace=False)
    near_originals, exact_originals = originals[: len(near)], originals[len(near) :]
    vectors[near] = around(
        vectors[near_originals], rng.uniform(0.88, 0.99, len(near)).astype(np.float32)
    )
    vectors[exact] = vectors[exact_originals]
    for copy, original in zip(exact, exact_originals):
        hashes[copy] = hashes[original]
    records = [
        dedup.DocRecord(
            doc_id=f"doc{i}", path=f"/corpus/doc{i:06d}.txt", doc_hash=hashes[i], order=i
        )
        for i in range(n)
    ]
    planted = list(zip(near_originals.tolist(), near.tolist()))
    return vectors, records, planted


def exact_pairs_of(vectors: np.ndarray, rows: np.ndarray, threshold: float) -> set[tuple[int, int]]:
    """Brute force: every pair (i, j), i in ``rows``, with cosine >= threshold."""
    out = set()
    for start in range(0, len(rows), 512):
        block = rows[start : start + 512]
        sims = vectors[block] @ vectors.T
        for r, j in zip(*np.nonzero(sims >= threshold)):
            i = int(block[r])
            if i != j:
                out.add((min(i, int(j)), max(i, int(j))))
    return out


def text_pairs(pairs: set[tuple[int, int]], records) -> set[tuple[int, int]]:
    """Pairs of documents as pairs of distinct texts (each text by its first copy)."""
    first: dict[str, int] = {}
    for i, record in enumerate(records):
        first.setdefault(record.doc_hash, i)
    out = set()
    for a, b in pairs:
        a, b = first[records[a].doc_hash], first[records[b].doc_hash]
        if a != b:
            out.add((min(a, b), max(a, b)))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="12500,25000,50000,100000")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threshold", type=float, default=dedup.DEFAULT_THRESHOLD)
    parser.add_argument("--sample", type=int, default=1000, help="rows checked by brute force")
    parser.add_argument(
        "--all-pairs-max",
        type=int,
        default=50000,
        help="also time comparing all pairs (blockwise matrix products) up to this n",
    )
    args = parser.parse_args()
    options = dedup.DedupOptions(threshold=args.threshold)
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start")
    print(f"{'n':>7} {'median s':>9} {'runs':>20} {'cpu s':>7} {'cpu us/doc':>10} {'exponent':>8} "
          f"{'groups':>7} {'planted found':>13} {'sampled recall':>14} {'all pairs s':>11} "
          f"{'load':>5}")  # fmt: skip
    previous = None
    for n in [int(s) for s in args.sizes.split(",")]:
        vectors, records, planted = synthetic(n)
        times, cpu = [], []
        for _ in range(args.runs):
            started, started_cpu = time.perf_counter(), time.process_time()
            detection = dedup.detect(vectors, records, options)
            times.append(time.perf_counter() - started)
            cpu.append(time.process_time() - started_cpu)
        median = statistics.median(times)
        exponent = (
            f"{math.log(median / previous[1]) / math.log(n / previous[0]):8.2f}"
            if previous
            else f"{'':8}"
        )
        previous = (n, median)
        found = {(p.a, p.b) for p in detection.pairs}
        above = [(a, b) for a, b in planted if float(vectors[a] @ vectors[b]) >= args.threshold]
        planted_found = sum((min(a, b), max(a, b)) in found for a, b in above)
        rng = np.random.default_rng(1)
        rows = rng.choice(n, size=min(args.sample, n), replace=False)
        truth = exact_pairs_of(vectors, rows, args.threshold)
        # Exact copies share their text's near pairs: compare pairs of distinct texts.
        truth = text_pairs(truth, records)
        sampled = len(truth & found) / len(truth) if truth else 1.0
        all_pairs = "-"
        if n <= args.all_pairs_max:
            started = time.perf_counter()
            exact_pairs_of(vectors, np.arange(n), args.threshold)
            all_pairs = f"{time.perf_counter() - started:.1f}"
        runs = ", ".join(f"{t:.1f}" for t in times)
        print(
            f"{n:7d} {median:9.2f} {runs:>20} {statistics.median(cpu):7.1f} "
            f"{1e6 * statistics.median(cpu) / n:10.0f} {exponent} "
            f"{len(detection.groups):7d} {planted_found:6d}/{len(above):<6d} {sampled:14.4f} "
            f"{all_pairs:>11} {os.getloadavg()[0]:5.1f}",
            flush=True,
        )
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
