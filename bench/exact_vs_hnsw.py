"""Exact (numpy) against HNSW search time for one query, by index size: where to switch.

    PYTHONPATH=. python bench/exact_vs_hnsw.py

Random unit vectors (384-d, as all-MiniLM-L6-v2), the index's defaults (M 16,
ef_construction 200, ef 128) and a query's fetch of 50 chunks. "hnsw": loading the graph
file and one knn_query; "exact": reading the vectors from the same file (graph.graph_items,
as `bienc query` does) and a brute-force top 50; "get_items": the same vectors through
hnswlib's get_items, which is why exact search does not use it. Files are in the page
cache, as for a repeated query. Prints the CPU's vector extensions.
"""

from __future__ import annotations

import re
import tempfile
import time
from pathlib import Path

import numpy as np

from bienc_cli.store import generations as store
from bienc_cli.store import graph, layout

DIM, FETCH, EF, REPEAT = 384, 50, 128, 20


def best_of(fn, *args, repeat=REPEAT) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - started)
    return min(times) * 1000


def main() -> None:
    flags = sorted(set(re.findall(r"avx512[a-z_]*|avx2", open("/proc/cpuinfo").read())))
    print("cpu flags:", " ".join(flags) or "none")
    rng = np.random.default_rng(0)
    print(f"{'chunks':>8} {'hnsw ms':>9} {'exact ms':>9} {'get_items ms':>13}")
    folder = Path(tempfile.mkdtemp(prefix="exact-vs-hnsw-"))
    for n in (1_000, 5_000, 10_000, 20_000, 50_000):
        vectors = rng.normal(size=(n, DIM)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        index = graph.new_hnsw(DIM, n, M=16, ef_construction=200)
        index.add_items(vectors, np.arange(n))
        generation = store.Generation(
            root=folder,
            dir=folder / str(n),
            manifest={
                "model": {"dim": DIM},
                "hnsw": {"space": "cosine", "max_elements": n, "ef": EF},
            },
        )
        generation.dir.mkdir()
        index.save_index(str(generation.dir / layout.VECTORS))
        query = vectors[:1] + 0.01

        hnsw = best_of(lambda g, q: g.load_hnsw().knn_query(q, k=FETCH), generation, query)
        exact = best_of(lambda g, q: graph.exact_knn(g.items(), q, FETCH), generation, query)
        slow = best_of(
            lambda i, m: i.get_items(np.arange(m), return_type="numpy"), index, n, repeat=3
        )
        print(f"{n:>8} {hnsw:>9.2f} {exact:>9.2f} {slow:>13.2f}")


if __name__ == "__main__":
    main()
