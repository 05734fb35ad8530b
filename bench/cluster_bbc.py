#!/usr/bin/env python3
"""Clustering quality of `bienc cluster` on BBC News (2,225 articles, 5 labelled classes).

Indexes ../shared/data/bbc_news once into bench/out/bbc with the default model (reused on
later runs; --rebuild to start over), then clusters the stored document vectors exactly as
`bienc cluster --index bench/out/bbc` does (the same library call), with:

- the default: k-means with K chosen automatically (silhouette), for seeds 0..4: the K found,
  V-measure and adjusted Rand index against the folders (business, entertainment, politics,
  sport, tech), and the stability: mean adjusted Rand index over the 10 pairs of seeds;
- k-means with the true K=5 (the data README's reference: V-measure 0.874);
- hdbscan (outliers count as one more cluster, as scikit-learn's metrics see them; also the
  V-measure of the clustered documents alone, and with --attach-outliers) and agglomerative
  clustering (average and ward linkage, automatic K), for comparison.

The bar (issue 6): automatic K between 4 and 6 clusters and V-measure >= 0.85.

    python bench/cluster_bbc.py [--data ../shared/data/bbc_news] [--index bench/out/bbc]
                                [--rebuild] [--seeds 5] [--plot bench/out/bbc_map.png]
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bienc_cli.cluster.algorithms import ClusterOptions  # noqa: E402
from bienc_cli.cluster.corpus import cluster_index  # noqa: E402


def ensure_index(data: Path, index: Path, rebuild: bool) -> None:
    """Index the BBC folder once; encoding 2,225 articles takes minutes on a CPU."""
    from bienc_cli.indexing.request import IndexRequest
    from bienc_cli.indexing.run import run_index
    from bienc_cli.store import generations as store

    if not rebuild:
        try:
            generation = store.open_index(index)
            if generation.manifest["counts"]["documents"] > 0:
                return
        except Exception:  # missing or damaged: build it
            pass
    print(f"indexing {data} into {index} (minutes on a CPU)...", flush=True)
    started = time.perf_counter()
    report = run_index(
        IndexRequest(
            root=index,
            sources=[str(data)],
            options={"exclude": ("README.TXT",)},
            rebuild=rebuild,
        )
    )
    print(
        f"indexed {report.documents} documents, {report.chunks} chunks "
        f"in {time.perf_counter() - started:.0f}s",
        flush=True,
    )


def score(report, truth_of) -> dict:
    from sklearn.metrics import adjusted_rand_score, v_measure_score

    truth = [truth_of(d.path) for d in report.documents]
    found = [d.cluster for d in report.documents]
    result = {
        "clusters": report.clustering.n_clusters,
        "outliers": report.clustering.n_outliers,
        "v_measure": round(float(v_measure_score(truth, found)), 4),
        "ari": round(float(adjusted_rand_score(truth, found)), 4),
    }
    if report.clustering.n_outliers:
        kept = [i for i, c in enumerate(found) if c != -1]
        result["v_measure_clustered_only"] = round(
            float(v_measure_score([truth[i] for i in kept], [found[i] for i in kept])), 4
        )
    return result


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "bbc_news"))
    parser.add_argument("--index", default=str(REPO / "bench" / "out" / "bbc"))
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--plot", default=None, help="also draw the seed-0 map here")
    parser.add_argument("--json", default=str(REPO / "bench" / "out" / "cluster_bbc.json"))
    args = parser.parse_args()
    data, index = Path(args.data).resolve(), Path(args.index)
    ensure_index(data, index, args.rebuild)
    from sklearn.metrics import adjusted_rand_score

    def truth_of(path: str) -> str:
        return Path(path).parent.name

    results: dict = {"index": str(index), "automatic_k": []}
    labelings = []
    first = None
    for seed in range(args.seeds):
        started = time.perf_counter()
        report = cluster_index(index, ClusterOptions(seed=seed))
        seconds = time.perf_counter() - started
        row = {"seed": seed, **score(report, truth_of), "seconds": round(seconds, 2)}
        results["automatic_k"].append(row)
        labelings.append([d.cluster for d in report.documents])
        print(json.dumps(row), flush=True)
        if first is None:
            first = report
    pairs = list(itertools.combinations(range(len(labelings)), 2))
    stability = (
        statistics.mean(adjusted_rand_score(labelings[i], labelings[j]) for i, j in pairs)
        if pairs
        else 1.0
    )
    results["stability_mean_pairwise_ari"] = round(float(stability), 4)
    ks = [r["clusters"] for r in results["automatic_k"]]
    vs = [r["v_measure"] for r in results["automatic_k"]]
    results["k_choice_seed0"] = {
        str(k): round(v, 4) for k, v in first.clustering.k_choice.scores.items()
    }

    print("\nseed 0 clusters (keywords; folders of the members):")
    for cluster in first.clustering.clusters:
        members = Counter(truth_of(first.documents[i].path) for i in range(len(first.documents))
                          if first.documents[i].cluster == cluster.id)  # fmt: skip
        print(
            f"  {cluster.id:>2} {cluster.size:>5}  {', '.join(cluster.keywords):<50} {dict(members.most_common(3))}"
        )

    others = {
        "kmeans_true_k5": ClusterOptions(n_clusters=5),
        "hdbscan": ClusterOptions(method="hdbscan"),
        "hdbscan_attached": ClusterOptions(method="hdbscan", attach_outliers=True),
        "agglomerative_average_automatic_k": ClusterOptions(method="agglomerative"),
        "agglomerative_ward_automatic_k": ClusterOptions(method="agglomerative", linkage="ward"),
        "agglomerative_ward_k5": ClusterOptions(
            method="agglomerative", linkage="ward", n_clusters=5
        ),
    }
    print()
    for name, options in others.items():
        started = time.perf_counter()
        report = cluster_index(index, options)
        results[name] = {
            **score(report, truth_of),
            "seconds": round(time.perf_counter() - started, 2),
        }
        print(f"{name}: {json.dumps(results[name])}", flush=True)

    passed = all(4 <= k <= 6 for k in ks) and min(vs) >= 0.85
    results["bar"] = "4 <= K <= 6 and V-measure >= 0.85 for every seed"
    results["passed"] = passed
    print(
        f"\nautomatic K over {len(ks)} seeds: K {sorted(set(ks))}, V-measure "
        f"{min(vs):.3f}..{max(vs):.3f} (mean {statistics.mean(vs):.3f}), ARI mean "
        f"{statistics.mean(r['ari'] for r in results['automatic_k']):.3f}, stability (mean "
        f"pairwise ARI) {stability:.3f}: {'PASS' if passed else 'FAIL'}"
    )
    if args.plot:
        from bienc_cli.cluster.plot import write_map

        write_map(first, [args.plot])
        print(f"map: {args.plot}")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
