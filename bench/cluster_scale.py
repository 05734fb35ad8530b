#!/usr/bin/env python3
"""Time and memory of `bienc cluster`'s algorithms on 100,000 document vectors.

The vectors are synthetic (no model: encoding 100,000 documents takes hours on a CPU): a
seeded mixture of topics on the 384-d unit sphere, of unequal sizes and spreads, with short
texts drawn from each topic's vocabulary for the keywords. Each run is the library call
behind the command, `cluster.cluster_vectors`, with the default method (k-means, K chosen
automatically by silhouette on a 4,000-document sample, mini-batch k-means for the final
fit), so it includes the choice of K, the distances, representatives and c-TF-IDF keywords.

Peak memory is the process's peak resident set (ru_maxrss) minus its resident set before
the first run, with the vectors and texts already in memory; tracemalloc's peak of Python
and NumPy allocations is given too. Time is the median of --repeat runs.

    python bench/cluster_scale.py [--documents 100000] [--topics 16] [--repeat 3] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bienc_cli.cluster.algorithms import ClusterOptions, cluster_vectors  # noqa: E402

LIMIT_S = 120.0


def synthetic_corpus(n: int, topics: int, dim: int = 384, seed: int = 0):
    """Unit vectors around ``topics`` centres (Zipf-like sizes, varied spreads), and texts."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(topics, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    weights = 1.0 / np.arange(1, topics + 1) ** 0.7
    truth = rng.choice(topics, size=n, p=weights / weights.sum())
    spreads = rng.uniform(0.8, 1.4, size=topics).astype(np.float32)
    vectors = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 10_000):  # in blocks: no 100,000 x 384 float64 temporary
        block = truth[start : start + 10_000]
        noise = rng.standard_normal((len(block), dim), dtype=np.float32)
        vectors[start : start + len(block)] = centres[block] + noise * (
            spreads[block, None] / np.sqrt(dim)
        )
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    vocabulary = [f"topic{chr(97 + t % 26)}{chr(97 + t // 26)}word" for t in range(topics)]
    common = ["report", "people", "today", "value", "system", "market", "group"]
    texts = []
    for t in truth:
        own = rng.integers(0, 40, size=6)
        words = [f"{vocabulary[t]}{chr(97 + i % 26)}{chr(97 + i // 26)}" for i in own]
        words += list(rng.choice(common, size=6))
        texts.append(" ".join(words))
    return vectors, truth, texts


def rss_mib() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--documents", type=int, default=100_000)
    parser.add_argument("--topics", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-n", type=int, default=None, help="fixed K instead of automatic")
    parser.add_argument("--method", default="kmeans", help="kmeans (default) or hdbscan")
    parser.add_argument("--json", default=str(REPO / "bench" / "out" / "cluster_scale.json"))
    args = parser.parse_args()

    started = time.perf_counter()
    vectors, truth, texts = synthetic_corpus(args.documents, args.topics, seed=args.seed)
    print(
        f"{args.documents} synthetic vectors ({vectors.shape[1]}-d, {args.topics} topics, "
        f"{vectors.nbytes / 2**20:.0f} MiB) in {time.perf_counter() - started:.1f}s",
        flush=True,
    )
    from sklearn.metrics import adjusted_rand_score, v_measure_score

    baseline = rss_mib()
    runs = []
    for repeat in range(args.repeat):
        tracemalloc.start()
        started = time.perf_counter()
        options = ClusterOptions(method=args.method, n_clusters=args.n, seed=args.seed + repeat)
        result = cluster_vectors(vectors, texts, options)
        seconds = time.perf_counter() - started
        _, traced_peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        run = {
            "seconds": round(seconds, 2),
            "k": result.n_clusters,
            "outliers": result.n_outliers,
            "v_measure": round(float(v_measure_score(truth, result.labels)), 4),
            "ari": round(float(adjusted_rand_score(truth, result.labels)), 4),
            "traced_peak_mib": round(traced_peak / 2**20, 1),
            "rss_peak_over_baseline_mib": round(peak_rss - baseline, 1),
        }
        runs.append(run)
        print(json.dumps(run), flush=True)
    median = statistics.median(r["seconds"] for r in runs)
    summary = {
        "documents": args.documents,
        "dim": int(vectors.shape[1]),
        "topics": args.topics,
        "method": args.method,
        "k": args.n or ("automatic (silhouette)" if args.method == "kmeans" else "hdbscan"),
        "runs": runs,
        "median_seconds": median,
        "limit_seconds": LIMIT_S,
        "vectors_mib": round(vectors.nbytes / 2**20, 1),
        "baseline_rss_mib": round(baseline, 1),
    }
    print(
        f"median {median:.1f}s over {len(runs)} runs (limit {LIMIT_S:.0f}s); "
        f"peak RSS {max(r['rss_peak_over_baseline_mib'] for r in runs):.0f} MiB over a "
        f"{baseline:.0f} MiB baseline that holds the {summary['vectors_mib']:.0f} MiB of vectors"
    )
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(summary, indent=2) + "\n")
    return 0 if median <= LIMIT_S else 1


if __name__ == "__main__":
    sys.exit(main())
