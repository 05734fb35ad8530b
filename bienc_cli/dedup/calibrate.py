"""`bienc dedup --calibrate`: the similarities a corpus holds, to choose a threshold by."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bienc_cli.dedup.detect import DocRecord, exact_classes, neighbour_graph
from bienc_cli.store.graph import knn


@dataclass
class Calibration:
    """Nearest-neighbour similarities, and example pairs around a few thresholds."""

    records: list[DocRecord]
    nearest: np.ndarray  # per distinct text: the similarity of its nearest other text
    bins: list[tuple[float, float, int]]  # (low, high, count) of ``nearest``
    examples: list[dict[str, Any]]  # per threshold: the pairs just above and just below
    thresholds: list[float]
    exact_copies: int


def calibrate(
    vectors: np.ndarray,
    records: Sequence[DocRecord],
    *,
    thresholds: Sequence[float] = (0.8, 0.85, 0.9, 0.95),
    bin_width: float = 0.05,
) -> Calibration:
    """The distribution of nearest-neighbour similarities, and pairs near each threshold.

    Each distinct text's nearest other text is found through the same kind of graph as
    detection uses; exact copies are counted apart. For each threshold, the example "just
    above" is the least similar nearest pair at or above it, "just below" the most similar
    one under it.
    """
    classes = exact_classes([r.doc_hash or r.doc_id for r in records])
    _, first = np.unique(classes, return_index=True)
    first = np.sort(first)
    nearest = np.zeros(0, dtype=np.float32)
    partner = np.zeros(0, dtype=np.int64)
    if len(first) >= 2:
        distinct = np.ascontiguousarray(vectors[first], dtype=np.float32)
        labels, _ = knn(neighbour_graph(distinct), distinct, 2, live=len(distinct))
        labels = labels.astype(np.int64)
        itself = labels[:, 0] == np.arange(len(distinct))
        partner = np.where(itself, labels[:, 1], labels[:, 0])
        nearest = np.minimum(np.einsum("ij,ij->i", distinct, distinct[partner]), 1.0)
    bins = []
    if nearest.size:
        low = np.floor(nearest.min() / bin_width) * bin_width
        edges = np.append(np.arange(low, 1.0 - bin_width / 2, bin_width), 1.0)
        counts, _ = np.histogram(nearest, bins=edges)  # the last bin includes 1.0
        bins = [(float(edges[k]), float(edges[k + 1]), int(c)) for k, c in enumerate(counts)]
    order = np.argsort(nearest, kind="stable").tolist()
    examples = []
    for threshold in thresholds:
        above = [k for k in order if nearest[k] >= threshold][:1]
        below = [k for k in order if nearest[k] < threshold][-1:]
        entry: dict[str, Any] = {"threshold": threshold, "above": None, "below": None}
        for side, picked in (("above", above), ("below", below)):
            for k in picked:
                a, b = sorted((int(first[k]), int(first[partner[k]])))
                entry[side] = {"a": a, "b": b, "similarity": float(nearest[k])}
        entry["share_above"] = float((nearest >= threshold).mean()) if nearest.size else 0.0
        examples.append(entry)
    exact_copies = len(records) - len(first)
    return Calibration(list(records), nearest, bins, examples, list(thresholds), exact_copies)
