"""`bienc cluster`'s algorithms: group document vectors by meaning, and name the groups.

The algorithms take document vectors (unit length, one row per document) and texts, never a
model, so they run on synthetic vectors in tests. Three methods:

- ``kmeans`` (default): k-means on the unit vectors. With no ``-n``, K is the one whose
  clustering has the highest mean silhouette on cosine distance, over K = 2 .. min(20,
  sqrt(n)), judged on a seeded sample of at most 4,000 documents. Past 20,000 documents the
  final fit is mini-batch k-means, so time and memory stay bounded. Every document gets a
  cluster.
- ``hdbscan``: scikit-learn's HDBSCAN on the vectors projected by PCA to 5 dimensions and
  put back on the unit sphere. Density is meaningless in 384 dimensions (all distances look
  alike): on BBC News, HDBSCAN on the raw vectors left 63% of the articles as outliers, on
  the 5-d projection 28% (same settings), and ran about 60 times faster (BERTopic projects
  with UMAP for the same reason). Documents in no dense group are outliers, cluster -1, unless ``attach_outliers``
  gives each to the cluster with the nearest centroid (in the full space).
- ``agglomerative``: hierarchical clustering on cosine distance (average linkage by default,
  so a threshold reads "groups whose documents are this far apart on average"), cut at
  ``threshold``, at ``-n`` clusters, or at the K with the best silhouette as for k-means.
  Its memory grows with the square of the documents, so it is refused past 10,000.

Clusters are numbered by size, largest first. Each is named by c-TF-IDF keywords
(`keywords.py`) and represented by the documents nearest its centroid. Every step that draws
random numbers takes ``seed``, and scikit-learn runs on one thread (see ``single_thread``):
the same input and seed give the same clusters. Where the vectors come from is
`corpus.py`; the folders of ``--organize`` are `organize.py`.

scikit-learn and scipy are imported inside the functions: `bienc --help` must not pay for them.
"""

from __future__ import annotations

import contextlib
import logging
import math
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bienc_cli.cluster.keywords import class_keywords, label_from
from bienc_cli.errors import UsageError

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

METHODS = ("kmeans", "hdbscan", "agglomerative")
LINKAGES = ("average", "complete", "single", "ward")
AUTO_K_MAX = 20  # automatic K tries at most this many clusters (and at most sqrt(n))
AUTO_K_SAMPLE = 4_000  # silhouettes for the choice of K are computed on this many documents
MINIBATCH_ABOVE = 20_000  # more documents than this: mini-batch k-means for the final fit
AGGLOMERATIVE_MAX = 10_000  # its distance matrix needs n^2 / 2 floats: 400 MB at this size
HDBSCAN_DIMS = 5  # HDBSCAN runs on a PCA projection to this many dimensions
# HDBSCAN's own default min_samples (= min_cluster_size) grows with the corpus, and so does
# its neighbour search: at 100,000 documents (1,000 neighbours each) it took 150 s and 3 GB.
HDBSCAN_MIN_SAMPLES = 10
OUTLIER = -1


@dataclass(frozen=True)
class ClusterOptions:
    method: str = "kmeans"
    n_clusters: int | None = None  # kmeans/agglomerative; None: automatic K (or threshold)
    max_clusters: int | None = None  # upper bound of the automatic K (default: min(20, sqrt n))
    threshold: float | None = None  # agglomerative: cosine distance at which merging stops
    linkage: str = "average"  # agglomerative
    min_cluster_size: int | None = None  # hdbscan; default: max(5, n / 100)
    min_samples: int | None = None  # hdbscan; default: min(min_cluster_size, 10)
    attach_outliers: bool = False  # hdbscan: give each outlier the nearest cluster
    seed: int = 0
    keywords: int = 5  # keywords per cluster
    representatives: int = 3  # documents nearest the centroid, per cluster


@dataclass
class KChoice:
    """How the automatic K was chosen: the silhouette of each K tried."""

    k: int
    scores: dict[int, float]  # K -> mean silhouette (cosine), on the sample
    sample: int  # documents the silhouettes were computed on
    criterion: str = "silhouette (cosine)"


@dataclass
class Cluster:
    id: int  # 0 is the largest; -1 holds HDBSCAN's outliers
    size: int
    keywords: list[str]
    label: str
    representatives: list[int]  # row numbers of the documents nearest the centroid
    cohesion: float | None  # mean cosine similarity of the members to the centroid


@dataclass
class Clustering:
    """The result on arrays: one entry per input row, and one ``Cluster`` per cluster."""

    labels: np.ndarray  # int, cluster id per row (-1: outlier)
    distances: np.ndarray  # cosine distance (1 - cos) to the own cluster's centroid; nan: outlier
    probabilities: np.ndarray | None  # hdbscan: membership strength in [0, 1]
    clusters: list[Cluster]
    method: str
    k_choice: KChoice | None = None
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def n_clusters(self) -> int:
        return sum(1 for c in self.clusters if c.id != OUTLIER)

    @property
    def n_outliers(self) -> int:
        return sum(c.size for c in self.clusters if c.id == OUTLIER)


def cluster_vectors(
    vectors: np.ndarray, texts: Sequence[str], options: ClusterOptions
) -> Clustering:
    """Cluster unit vectors (one row per document) and name the clusters from ``texts``."""
    import numpy as np

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n = len(vectors)
    _check(options, n, len(texts))
    with single_thread():
        labels, probabilities, k_choice, params = _fit(vectors, options)
    labels = renumber_by_size(labels)
    centroids = centroids_of(vectors, labels)
    distances = np.full(n, np.nan, dtype=np.float64)
    member = labels != OUTLIER
    if member.any():
        own = centroids[labels[member]]
        # clipped: float32 rounding makes 1 - cos of a centroid's only member about -1e-8
        distances[member] = np.clip(1.0 - np.einsum("ij,ij->i", vectors[member], own), 0.0, 2.0)
    names = class_keywords(texts, labels, top=options.keywords)
    clusters = []
    for cluster_id in sorted(set(labels.tolist()), key=lambda c: (c == OUTLIER, c)):
        rows = np.flatnonzero(labels == cluster_id)
        if cluster_id == OUTLIER:
            clusters.append(Cluster(OUTLIER, len(rows), [], "(outliers)", [], None))
            continue
        nearest = rows[np.argsort(distances[rows], kind="stable")][: options.representatives]
        words = names.get(cluster_id, [])
        cohesion = float(1.0 - distances[rows].mean())
        clusters.append(
            Cluster(cluster_id, len(rows), words, label_from(words), nearest.tolist(), cohesion)
        )
    return Clustering(labels, distances, probabilities, clusters, options.method, k_choice, params)


def _fit(vectors: np.ndarray, options: ClusterOptions):
    """Raw labels of the chosen method, its membership strengths, K choice and parameters."""
    import numpy as np

    n = len(vectors)
    probabilities = None
    k_choice = None
    params: dict[str, Any] = {"seed": options.seed}
    if n == 0:
        labels = np.zeros(0, dtype=np.int64)
    elif options.method == "kmeans":
        k = options.n_clusters
        if k is None:
            k_choice = choose_k(vectors, max_k=options.max_clusters, seed=options.seed)
            k = k_choice.k
        labels = kmeans_labels(vectors, k, seed=options.seed)
        params["k"] = k
    elif options.method == "hdbscan":
        min_size = options.min_cluster_size or max(5, n // 100)
        min_samples = options.min_samples or min(min_size, HDBSCAN_MIN_SAMPLES)
        labels, probabilities = hdbscan_labels(
            vectors, min_size, min_samples=min_samples, seed=options.seed
        )
        params.update({"min_cluster_size": min_size, "min_samples": min_samples})
        params["pca_dims"] = HDBSCAN_DIMS if _projects(vectors) else None
        if options.attach_outliers:
            labels = attach_outliers(vectors, labels)
    else:
        labels, k_choice = agglomerative_labels(
            vectors,
            n_clusters=options.n_clusters,
            threshold=options.threshold,
            linkage=options.linkage,
            max_k=options.max_clusters,
            seed=options.seed,
        )
        params["linkage"] = options.linkage
        if options.threshold is not None:
            params["threshold"] = options.threshold
        else:
            params["k"] = options.n_clusters or (k_choice.k if k_choice else 1)
    return labels, probabilities, k_choice, params


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Run scikit-learn's OpenMP/BLAS code on one thread.

    Two reasons. Results then do not depend on the machine's core count (sums are added in
    one order), so a seed gives the same clusters everywhere. And on a few shared cores,
    OpenMP threads spin waiting for each other: k-means on 20,000 x 384 vectors took 47 s
    with scikit-learn's default threads and 8 s with one, on the 2 busy cores bienc was
    developed on.
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield


def _check(options: ClusterOptions, n: int, n_texts: int) -> None:
    if n_texts != n:
        raise ValueError(f"{n} vectors but {n_texts} texts")
    check_options(options)
    if n and options.n_clusters is not None and options.n_clusters > n:
        raise UsageError(f"-n {options.n_clusters} asks for more clusters than documents ({n})")
    if options.method == "agglomerative" and n > AGGLOMERATIVE_MAX:
        raise UsageError(
            f"agglomerative clustering of {n} documents needs memory for {n}^2/2 distances; "
            f"it is limited to {AGGLOMERATIVE_MAX}: use --method kmeans"
        )


def check_options(options: ClusterOptions) -> None:
    """Refuse options that cannot work whatever the documents: before any is read or encoded."""
    method = options.method
    if method not in METHODS:
        raise UsageError(f"unknown --method {method!r}; choose one of {', '.join(METHODS)}")
    if options.n_clusters is not None:
        if method == "hdbscan":
            raise UsageError("hdbscan finds the number of clusters itself; drop -n")
        if options.n_clusters < 1:
            raise UsageError("-n must be at least 1")
    if not 0 <= options.seed < 2**32:
        raise UsageError(f"--seed {options.seed}: use a number from 0 to {2**32 - 1}")
    only = {
        "--threshold": (options.threshold is not None, "agglomerative"),
        "--linkage": (options.linkage != "average", "agglomerative"),
        "--attach-outliers": (options.attach_outliers, "hdbscan"),
        "--min-cluster-size": (options.min_cluster_size is not None, "hdbscan"),
        "--min-samples": (options.min_samples is not None, "hdbscan"),
        "--max-clusters": (options.max_clusters is not None, "kmeans or agglomerative"),
    }
    for flag, (given, methods) in only.items():
        if given and method not in methods.split(" or "):
            raise UsageError(f"{flag} applies to --method {methods} only")
    if options.linkage not in LINKAGES:
        raise UsageError(
            f"unknown --linkage {options.linkage!r}; choose one of {', '.join(LINKAGES)}"
        )
    if options.threshold is not None:
        if options.n_clusters is not None:
            raise UsageError("give -n or --threshold, not both")
        if options.linkage == "ward":
            raise UsageError(
                "--threshold is a cosine distance, which ward linkage does not merge by; use -n"
            )
        if not 0 < options.threshold <= 2:
            raise UsageError("--threshold is a cosine distance: between 0 and 2")
    if options.max_clusters is not None:
        if options.n_clusters is not None or options.threshold is not None:
            raise UsageError("--max-clusters bounds the automatic K; drop it, -n or --threshold")
        if options.max_clusters < 2:
            raise UsageError("--max-clusters must be at least 2")
    for flag, value in (
        ("--min-cluster-size", options.min_cluster_size),
        ("--min-samples", options.min_samples),
    ):
        if value is not None and value < (2 if flag == "--min-cluster-size" else 1):
            raise UsageError(f"{flag} must be at least {2 if flag == '--min-cluster-size' else 1}")


def auto_k_range(n: int, max_k: int | None = None) -> range:
    """The K tried by the automatic choice: 2 .. min(20, sqrt(n)), and at most n - 1."""
    upper = max_k if max_k is not None else min(AUTO_K_MAX, max(2, math.isqrt(n)))
    return range(2, min(upper, n - 1) + 1)


def choose_k(vectors: np.ndarray, *, max_k: int | None = None, seed: int = 0) -> KChoice:
    """The K whose k-means clustering has the highest mean silhouette on cosine distance.

    The silhouette compares each document's mean distance to its own cluster with that to the
    nearest other cluster; it needs no labels and no knowledge of the corpus. Large inputs are
    judged on a seeded sample of ``AUTO_K_SAMPLE`` documents (the silhouette costs n^2).
    """
    rows = _sample_rows(len(vectors), seed)
    sample = vectors if rows is None else vectors[rows]
    candidates = auto_k_range(len(vectors), max_k)
    return best_silhouette(
        sample, candidates, lambda k: kmeans_labels(sample, k, seed=seed, n_init=3)
    )


def best_silhouette(sample: np.ndarray, candidates: Sequence[int], labels_for) -> KChoice:
    """The candidate K whose labels of ``sample`` (``labels_for(K)``) have the best silhouette.

    Ties go to the smaller K; K whose labelling has a single cluster are not scored.
    """
    import numpy as np
    from sklearn.metrics import silhouette_score

    scores: dict[int, float] = {}
    for k in candidates:
        labels = labels_for(k)
        if len(np.unique(labels)) < 2:  # fewer distinct vectors than k
            continue
        scores[k] = float(silhouette_score(sample, labels, metric="cosine"))
        log.debug("K=%d: mean silhouette %.4f on %d documents", k, scores[k], len(sample))
    if not scores:
        return KChoice(k=1, scores={}, sample=len(sample))
    best = max(scores, key=lambda k: (scores[k], -k))
    return KChoice(k=best, scores=scores, sample=len(sample))


def _sample_rows(n: int, seed: int) -> np.ndarray | None:
    """A seeded, sorted sample of ``AUTO_K_SAMPLE`` row numbers, or None to use all rows."""
    import numpy as np

    if n <= AUTO_K_SAMPLE:
        return None
    return np.sort(np.random.default_rng(seed).choice(n, AUTO_K_SAMPLE, replace=False))


def kmeans_labels(vectors: np.ndarray, k: int, *, seed: int = 0, n_init: int = 10) -> np.ndarray:
    """k-means cluster of each row, best of ``n_init`` starts.

    Past ``MINIBATCH_ABOVE`` rows, mini-batch k-means (at most 3 starts): it sees 4,096 rows at
    a time, so its time and memory do not grow with the square of anything.
    """
    import numpy as np
    from sklearn.cluster import KMeans, MiniBatchKMeans
    from sklearn.exceptions import ConvergenceWarning

    if k <= 1 or len(vectors) <= 1:
        return np.zeros(len(vectors), dtype=np.int64)
    if len(vectors) > MINIBATCH_ABOVE:
        model = MiniBatchKMeans(
            n_clusters=k,
            random_state=seed,
            n_init=min(n_init, 3),
            batch_size=4096,
            max_no_improvement=20,
        )
    else:
        model = KMeans(n_clusters=k, random_state=seed, n_init=n_init)
    with warnings.catch_warnings():
        # Fewer distinct vectors than k (duplicates): some clusters stay empty, and are dropped.
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit_predict(vectors).astype(np.int64)


def hdbscan_labels(
    vectors: np.ndarray, min_cluster_size: int, *, min_samples: int | None = None, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """HDBSCAN clusters (-1: outlier) and membership strengths, on a 5-d PCA projection."""
    import numpy as np
    from sklearn.cluster import HDBSCAN

    n = len(vectors)
    # Fewer documents than a cluster needs, or than the neighbours a dense region needs
    # (scikit-learn raises on that one): none is in a cluster.
    if n < max(2, min_cluster_size, min_samples or 0):
        return np.full(n, OUTLIER, dtype=np.int64), np.zeros(n)
    points = vectors
    if _projects(vectors):
        from sklearn.decomposition import PCA

        # covariance_eigh: exact (no random projection) and fast when rows outnumber columns.
        pca = PCA(n_components=HDBSCAN_DIMS, svd_solver="covariance_eigh", random_state=seed)
        points = pca.fit_transform(vectors)
        points /= np.maximum(np.linalg.norm(points, axis=1, keepdims=True), 1e-12)
    model = HDBSCAN(min_cluster_size=min_cluster_size, min_samples=min_samples, copy=True)
    labels = model.fit_predict(points).astype(np.int64)
    return labels, model.probabilities_.astype(np.float64)


def _projects(vectors: np.ndarray) -> bool:
    """Whether HDBSCAN works on a PCA projection (more dimensions than HDBSCAN_DIMS)."""
    return vectors.shape[1] > HDBSCAN_DIMS and len(vectors) > HDBSCAN_DIMS


def agglomerative_labels(
    vectors: np.ndarray,
    *,
    n_clusters: int | None = None,
    threshold: float | None = None,
    linkage: str = "average",
    max_k: int | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, KChoice | None]:
    """Hierarchical clusters cut at ``threshold`` (cosine), at ``n_clusters``, or at the K with
    the best silhouette (then also returned, as for k-means)."""
    import numpy as np
    from scipy.cluster import hierarchy
    from scipy.spatial.distance import pdist

    n = len(vectors)
    if n < 2:
        return np.zeros(n, dtype=np.int64), None
    points = vectors.astype(np.float64)
    if linkage == "ward":  # Ward merges by variance, on Euclidean distance: cosine on unit vectors
        tree = hierarchy.linkage(points, method="ward")
    else:
        distances = np.clip(pdist(points, metric="cosine"), 0.0, 2.0)
        tree = hierarchy.linkage(distances, method=linkage)
    if threshold is not None:
        return hierarchy.fcluster(tree, t=threshold, criterion="distance").astype(np.int64), None
    if n_clusters is not None:
        return hierarchy.fcluster(tree, t=n_clusters, criterion="maxclust").astype(np.int64), None
    rows = _sample_rows(n, seed)
    sample = vectors if rows is None else vectors[rows]

    def cut(k: int) -> np.ndarray:
        labels = hierarchy.fcluster(tree, t=k, criterion="maxclust")
        return labels if rows is None else labels[rows]

    choice = best_silhouette(sample, auto_k_range(n, max_k), cut)
    return hierarchy.fcluster(tree, t=choice.k, criterion="maxclust").astype(np.int64), choice


def attach_outliers(vectors: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Give each outlier (-1) the cluster whose centroid is nearest (cosine)."""
    import numpy as np

    labels = labels.copy()
    outliers = labels == OUTLIER
    if not outliers.any() or outliers.all():
        return labels
    clusters = np.unique(labels[~outliers])
    centroids = centroids_of(vectors, labels)[clusters]
    labels[outliers] = clusters[np.argmax(vectors[outliers] @ centroids.T, axis=1)]
    return labels


def renumber_by_size(labels: np.ndarray) -> np.ndarray:
    """Cluster ids 0, 1, 2 ... from the largest cluster down; ties: first row first. -1 stays."""
    import numpy as np

    labels = np.asarray(labels, dtype=np.int64)
    ids, first, sizes = np.unique(labels, return_index=True, return_counts=True)
    keep = ids != OUTLIER
    ids, first, sizes = ids[keep], first[keep], sizes[keep]
    order = ids[np.lexsort((first, -sizes))]  # by size descending, then first appearance
    mapping = np.full(int(labels.max()) + 2 if len(labels) else 1, OUTLIER, dtype=np.int64)
    mapping[order] = np.arange(len(order))
    return np.where(labels == OUTLIER, OUTLIER, mapping[labels])


def centroids_of(vectors: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Unit-length mean vector of each cluster id 0..max (rows of empty ids are zero)."""
    import numpy as np
    from scipy import sparse

    size = int(labels.max()) + 1 if len(labels) and labels.max() >= 0 else 0
    member = np.flatnonzero(labels != OUTLIER)
    # A (clusters x rows) indicator matrix sums each cluster's vectors in one product.
    indicator = sparse.csr_matrix(
        (np.ones(len(member), dtype=np.float32), (labels[member], member)),
        shape=(size, len(vectors)),
    )
    sums = np.asarray(indicator @ vectors, dtype=np.float64)
    norms = np.linalg.norm(sums, axis=1, keepdims=True)
    return (sums / np.maximum(norms, 1e-12)).astype(np.float32)
