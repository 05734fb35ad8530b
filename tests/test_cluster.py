"""`bienc cluster`: the algorithms on synthetic vectors, keywords, the map, folders, the CLI."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score
from typer.testing import CliRunner

from bienc_cli.cli.main import app
from bienc_cli.cluster import algorithms as clustering
from bienc_cli.cluster import corpus
from bienc_cli.cluster.algorithms import ClusterOptions, cluster_vectors
from bienc_cli.cluster.corpus import ClusterReport, DocumentAssignment
from bienc_cli.cluster.keywords import c_tf_idf, class_keywords, label_from
from bienc_cli.cluster.organize import folder_name, slug
from bienc_cli.errors import ExitStatus, UsageError
from tests.conftest import SAMPLE_CORPUS

runner = CliRunner()
FAQ_IDS = {f"faq-{i:03d}" for i in range(1, 17)} - {"faq-015"}  # faq-015 has no text

TOPIC_WORDS = [
    "rocket orbit planet telescope galaxy",
    "flour dough oven butter sugar",
    "python function compiler variable loop",
    "train ticket hotel passport luggage",
    "basil compost seedling pruning mulch",
    "guitar melody chord rhythm tempo",
    "goal striker referee stadium league",
    "vaccine patient doctor clinic fever",
]


def blobs(sizes, dim=48, spread=0.35, seed=0):
    """Groups of unit vectors around random centres, far apart; returns vectors, truth, texts."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(sizes), dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    rows, truth = [], []
    for group, size in enumerate(sizes):
        noise = rng.normal(size=(size, dim)) * spread / np.sqrt(dim)
        rows.append(centres[group] + noise)
        truth += [group] * size
    vectors = np.concatenate(rows)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    texts = [f"The {TOPIC_WORDS[g % len(TOPIC_WORDS)]} and 2024 of it" for g in truth]
    return vectors.astype(np.float32), np.array(truth), texts


def bienc(*args, input=None):
    return runner.invoke(app, [str(a) for a in args], input=input, catch_exceptions=False)


# --- algorithms on synthetic vectors ------------------------------------------------------


@pytest.mark.parametrize("groups", [3, 5, 8])
def test_automatic_k_finds_the_number_of_groups(groups):
    vectors, truth, texts = blobs([30] * groups)
    result = cluster_vectors(vectors, texts, ClusterOptions())
    assert result.k_choice is not None and result.k_choice.k == groups
    assert result.n_clusters == groups
    assert adjusted_rand_score(truth, result.labels) == 1.0
    assert set(result.k_choice.scores) == set(range(2, math.isqrt(30 * groups) + 1))


def test_automatic_k_on_a_sample_of_a_large_input(monkeypatch):
    monkeypatch.setattr(clustering, "AUTO_K_SAMPLE", 100)
    vectors, truth, texts = blobs([150] * 4)
    result = cluster_vectors(vectors, texts, ClusterOptions(seed=3))
    assert result.k_choice.sample == 100 and result.k_choice.k == 4
    assert adjusted_rand_score(truth, result.labels) == 1.0


def test_max_clusters_bounds_the_automatic_k():
    vectors, _, texts = blobs([20] * 6)
    result = cluster_vectors(vectors, texts, ClusterOptions(max_clusters=4))
    assert max(result.k_choice.scores) == 4 and result.n_clusters <= 4


def test_minibatch_kmeans_past_the_limit(monkeypatch):
    monkeypatch.setattr(clustering, "MINIBATCH_ABOVE", 50)
    vectors, truth, texts = blobs([40] * 3)
    result = cluster_vectors(vectors, texts, ClusterOptions(n_clusters=3))
    assert adjusted_rand_score(truth, result.labels) == 1.0


@pytest.mark.parametrize("method", ["kmeans", "hdbscan", "agglomerative"])
def test_same_seed_same_clusters(method):
    vectors, _, texts = blobs([25, 20, 15], spread=0.9)
    first = cluster_vectors(vectors, texts, ClusterOptions(method=method, seed=7))
    second = cluster_vectors(vectors, texts, ClusterOptions(method=method, seed=7))
    assert np.array_equal(first.labels, second.labels)
    assert [c.keywords for c in first.clusters] == [c.keywords for c in second.clusters]


def test_clusters_are_numbered_by_size_and_carry_their_members():
    vectors, truth, texts = blobs([10, 40, 25])
    result = cluster_vectors(vectors, texts, ClusterOptions(n_clusters=3))
    assert [c.size for c in result.clusters] == [40, 25, 10]
    assert [c.id for c in result.clusters] == [0, 1, 2]
    assert result.clusters[0].keywords[:1] == ["flour"] or "flour" in result.clusters[0].keywords
    assert np.array_equal(np.bincount(result.labels), [40, 25, 10])


def test_distances_are_cosine_to_the_centroid_and_representatives_nearest():
    vectors, _, texts = blobs([30, 30], spread=0.8)
    result = cluster_vectors(vectors, texts, ClusterOptions(n_clusters=2, representatives=4))
    for cluster in result.clusters:
        rows = np.flatnonzero(result.labels == cluster.id)
        centroid = vectors[rows].sum(axis=0)
        centroid /= np.linalg.norm(centroid)
        expected = 1 - vectors[rows] @ centroid
        assert np.allclose(result.distances[rows], expected, atol=1e-5)
        assert cluster.representatives == rows[np.argsort(expected)][:4].tolist()
        assert cluster.cohesion == pytest.approx(1 - expected.mean(), abs=1e-5)


def sphere_groups(centres, size=30, spread=0.02, seed=0):
    """Tight groups of unit vectors around the given (unnormalised) centres."""
    rng = np.random.default_rng(seed)
    centres = np.asarray(centres, dtype=float)
    rows = [c / np.linalg.norm(c) + rng.normal(size=(size, len(c))) * spread for c in centres]
    vectors = np.concatenate(rows)
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def unit(*rows):
    rows = np.asarray(rows, dtype=float)
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def test_hdbscan_reports_outliers_as_minus_one():
    # Five dimensions: HDBSCAN runs on the vectors as they are (no projection needed).
    e = np.eye(5)
    groups = sphere_groups([e[0], e[0] + e[1], e[0] + e[2]])  # 45 degrees apart
    strays = unit(e[3], e[4], -e[0])  # at right angles (or more) to every group
    vectors = np.concatenate([groups, strays])
    texts = ["alpha"] * 30 + ["beta"] * 30 + ["gamma"] * 30 + ["stray words here"] * 3
    result = cluster_vectors(vectors, texts, ClusterOptions(method="hdbscan"))
    assert result.n_clusters == 3 and result.params["pca_dims"] is None
    assert result.labels[-3:].tolist() == [-1, -1, -1]
    assert adjusted_rand_score(np.repeat([0, 1, 2], 30), result.labels[:-3]) == 1.0
    outliers = result.clusters[-1]
    assert outliers.id == -1 and outliers.size == result.n_outliers == 3
    assert outliers.keywords == [] and outliers.representatives == []
    assert np.isnan(result.distances[-3:]).all() and not np.isnan(result.distances[:-3]).any()
    assert result.probabilities is not None
    assert ((result.probabilities >= 0) & (result.probabilities <= 1)).all()
    assert (result.probabilities[-3:] == 0).all()


def test_attach_outliers_gives_each_the_nearest_cluster():
    e = np.eye(5)
    groups = sphere_groups([e[0], e[0] + e[1]], size=40)
    # Far from both groups (beyond the distance at which they merge), each leaning to one.
    strays = unit(e[3] + 0.3 * e[0], e[4] + 0.3 * (e[0] + e[1]))
    vectors = np.concatenate([groups, strays])
    texts = ["alpha words"] * 40 + ["beta words"] * 40 + ["stray", "stray"]
    plain = cluster_vectors(vectors, texts, ClusterOptions(method="hdbscan"))
    assert plain.n_clusters == 2 and plain.labels[-2:].tolist() == [-1, -1]
    attached = cluster_vectors(
        vectors, texts, ClusterOptions(method="hdbscan", attach_outliers=True)
    )
    assert attached.n_outliers == 0
    assert attached.labels[-2] == attached.labels[0] and attached.labels[-1] == attached.labels[45]
    assert not np.isnan(attached.distances).any()


def test_hdbscan_projects_many_dimensions_to_five():
    vectors, truth, texts = blobs([40, 40, 40], dim=384, spread=0.3)
    result = cluster_vectors(vectors, texts, ClusterOptions(method="hdbscan"))
    assert result.params["pca_dims"] == 5
    members = result.labels != -1
    assert result.n_clusters == 3 and members.mean() > 0.8
    assert adjusted_rand_score(truth[members], result.labels[members]) == 1.0


def test_agglomerative_threshold_fixed_n_and_automatic_k():
    vectors, truth, texts = blobs([20, 20, 20, 20], spread=0.3)
    cut = cluster_vectors(vectors, texts, ClusterOptions(method="agglomerative", threshold=0.5))
    assert cut.n_clusters == 4 and adjusted_rand_score(truth, cut.labels) == 1.0
    assert cut.params == {"seed": 0, "linkage": "average", "threshold": 0.5}
    tight = cluster_vectors(vectors, texts, ClusterOptions(method="agglomerative", threshold=0.01))
    assert tight.n_clusters > 4
    fixed = cluster_vectors(vectors, texts, ClusterOptions(method="agglomerative", n_clusters=2))
    assert fixed.n_clusters == 2 and fixed.k_choice is None
    automatic = cluster_vectors(vectors, texts, ClusterOptions(method="agglomerative"))
    assert automatic.k_choice.k == 4 and adjusted_rand_score(truth, automatic.labels) == 1.0


@pytest.mark.parametrize("linkage", ["complete", "single", "ward"])
def test_agglomerative_linkages(linkage):
    vectors, truth, texts = blobs([20, 15, 10], spread=0.3)
    options = ClusterOptions(method="agglomerative", linkage=linkage, n_clusters=3)
    assert adjusted_rand_score(truth, cluster_vectors(vectors, texts, options).labels) == 1.0


@pytest.mark.parametrize("n", [0, 1, 2, 3])
def test_tiny_inputs(n):
    vectors, _, texts = blobs([n]) if n else (np.zeros((0, 8), np.float32), None, [])
    result = cluster_vectors(vectors, texts, ClusterOptions())
    assert len(result.labels) == n
    assert sum(c.size for c in result.clusters) == n


def test_hdbscan_on_too_few_documents_leaves_all_outliers():
    vectors, _, texts = blobs([4])
    options = ClusterOptions(method="hdbscan", attach_outliers=True)
    result = cluster_vectors(vectors, texts, options)
    assert result.n_clusters == 0 and result.n_outliers == 4
    assert [c.id for c in result.clusters] == [-1]


def test_identical_vectors_make_one_cluster():
    vectors = np.tile(np.eye(1, 16, dtype=np.float32), (12, 1))
    result = cluster_vectors(vectors, ["same text here"] * 12, ClusterOptions())
    assert result.n_clusters == 1 and result.clusters[0].size == 12


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (ClusterOptions(method="spectral"), "unknown --method"),
        (ClusterOptions(n_clusters=50), "more clusters than documents"),
        (ClusterOptions(method="hdbscan", n_clusters=3), "drop -n"),
        (ClusterOptions(threshold=0.5), "--threshold applies to --method agglomerative only"),
        (ClusterOptions(linkage="ward"), "--linkage applies to --method agglomerative only"),
        (ClusterOptions(method="agglomerative", linkage="median"), "unknown --linkage"),
        (ClusterOptions(method="agglomerative", threshold=3.0), "between 0 and 2"),
        (ClusterOptions(method="agglomerative", threshold=0.4, n_clusters=2), "not both"),
        (
            ClusterOptions(method="agglomerative", threshold=0.4, linkage="ward"),
            "ward linkage does not merge by",
        ),
        (ClusterOptions(attach_outliers=True), "--attach-outliers applies to --method hdbscan"),
        (ClusterOptions(min_cluster_size=4), "--min-cluster-size applies to --method hdbscan"),
        (ClusterOptions(min_samples=4), "--min-samples applies to --method hdbscan"),
        (ClusterOptions(method="hdbscan", min_cluster_size=1), "at least 2"),
        (ClusterOptions(method="hdbscan", min_samples=0), "at least 1"),
        (ClusterOptions(method="hdbscan", max_clusters=5), "kmeans or agglomerative only"),
        (ClusterOptions(n_clusters=3, max_clusters=5), "drop it, -n or --threshold"),
        (ClusterOptions(max_clusters=1), "at least 2"),
    ],
)
def test_bad_options_are_usage_errors(options, message):
    vectors, _, texts = blobs([10, 10])
    with pytest.raises(UsageError, match=message):
        cluster_vectors(vectors, texts, options)


def test_agglomerative_refuses_more_documents_than_its_memory_bound(monkeypatch):
    monkeypatch.setattr(clustering, "AGGLOMERATIVE_MAX", 30)
    vectors, _, texts = blobs([20, 20])
    with pytest.raises(UsageError, match="use --method kmeans"):
        cluster_vectors(vectors, texts, ClusterOptions(method="agglomerative"))


def test_renumber_by_size_keeps_outliers():
    labels = np.array([5, 5, -1, 2, 2, 2, 9, -1])
    assert clustering.renumber_by_size(labels).tolist() == [1, 1, -1, 0, 0, 0, 2, -1]


# --- keywords -----------------------------------------------------------------------------


def test_keywords_drop_stop_words_numbers_and_short_words():
    texts = [
        "The rocket and the orbit, 2024: we go to it at 10 km. Les étoiles et la lune.",
        "The rocket orbit is a way to go into space, and the rocket flies.",
        "Flour and butter and sugar: the oven is at 200 degrees.",
    ]
    keywords = class_keywords(texts, [0, 0, 1], top=10)
    assert set(keywords[0][:2]) == {"rocket", "orbit"}
    for words in keywords.values():
        assert not {"the", "and", "les", "way", "2024", "km", "go", "it"} & set(words)
    assert set(keywords[1]) == {"flour", "butter", "sugar", "oven", "degrees"}


def test_words_shared_by_every_cluster_rank_below_distinctive_ones():
    texts = ["garden basil garden", "garden tomato garden", "garden carrot garden"]
    keywords = class_keywords(texts, [0, 1, 2], top=2)
    assert keywords == {0: ["basil", "garden"], 1: ["tomato", "garden"], 2: ["carrot", "garden"]}


def test_c_tf_idf_is_bertopics_formula_with_frequent_words_reduced():
    counts = np.array([[3, 1, 0], [0, 1, 4]])
    average_words = counts.sum(axis=1).mean()  # 4.5
    tf = np.sqrt(counts / counts.sum(axis=1, keepdims=True))
    expected = tf * np.log(1 + average_words / counts.sum(axis=0))
    assert np.allclose(c_tf_idf(counts).toarray(), expected)


def test_outliers_and_empty_texts_get_no_keywords():
    keywords = class_keywords(["a b 12", "the of and", "words"], [-1, 0, 1])
    assert keywords == {0: [], 1: ["words"]}
    assert class_keywords(["the", "12"], [0, 1]) == {0: [], 1: []}
    assert label_from([]) == "(no keywords)"
    assert label_from(["basil", "pots", "water", "light"]) == "basil, pots, water"


# --- the map ------------------------------------------------------------------------------


def test_projection_is_tsne_for_small_inputs_and_pca_beyond(monkeypatch):
    from bienc_cli.cluster import plot as plot

    vectors, _, _ = blobs([15, 15])
    coords, name = plot.project(vectors, seed=0)
    assert coords.shape == (30, 2) and name.startswith("t-SNE")
    monkeypatch.setattr(plot, "TSNE_MAX", 10)
    coords, name = plot.project(vectors, seed=0)
    assert coords.shape == (30, 2) and name == "PCA"


def _report(vectors, texts, options=None):
    documents = []
    result = cluster_vectors(vectors, texts, options or ClusterOptions(n_clusters=3))
    labels = {c.id: c.label for c in result.clusters}
    for i, text in enumerate(texts):
        documents.append(
            DocumentAssignment(
                doc_id=f"/docs/{i}.txt", path=f"/docs/{i}.txt", row_id=None, kind="text",
                title=text[:20], cluster=int(result.labels[i]), label=labels[int(result.labels[i])],
                distance=float(result.distances[i]), probability=None,
            )
        )  # fmt: skip
    return ClusterReport(documents, result, vectors, list(texts), ["/docs"], "fake")


def test_plot_writes_a_png_and_a_self_contained_html(tmp_path):
    from bienc_cli.cluster import plot as plot

    vectors, _, texts = blobs([20, 15, 10])
    report = _report(vectors, texts)
    png, page = tmp_path / "map.png", tmp_path / "map.html"
    plot.write_map(report, [png, page])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = page.read_text()
    assert text.count("<circle") == 45 and "<svg" in text
    assert "0: galaxy, orbit" in text  # the largest group's first keywords, on the map
    assert "src=" not in text and "http://" not in text.replace("http://www.w3.org/2000/svg", "")


def test_html_map_draws_a_sample_of_a_large_corpus(monkeypatch):
    from bienc_cli.cluster import plot as plot

    monkeypatch.setattr(plot, "HTML_MAX_POINTS", 20)
    vectors, _, texts = blobs([20, 15, 10])
    page = plot.html_map(plot.map_data(_report(vectors, texts)))
    assert page.count("<circle") == 20 and "20 of 45 documents drawn" in page
    assert "(20)</li>" in page  # the legend counts every document of the largest cluster


def test_plot_path_must_have_a_known_suffix():
    from bienc_cli.cluster import plot as plot

    with pytest.raises(UsageError, match="--plot map.jpeg"):
        plot.check_plot_path("map.jpeg")


def test_titles_drop_heading_and_comment_marks():
    assert corpus._title("# Growing Basil\n\nBasil likes sun.", None) == "Growing Basil"
    assert corpus._title('\n"""Retry a flaky call."""\n', None) == "Retry a flaky call."
    assert corpus._title("// main entry", None) == "main entry"
    assert corpus._title("/* A C comment */\nint x;", None) == "A C comment"
    assert corpus._title("Some text", '{"title": "Row title", "lang": "en"}') == "Row title"
    assert corpus._title("x" * 200, None).endswith("…")


def test_importing_the_cluster_modules_loads_no_heavy_library():
    import subprocess
    import sys

    code = (
        "import sys, bienc_cli.cli.main, bienc_cli.cluster.algorithms, bienc_cli.cluster.corpus, "
        "bienc_cli.cluster.organize, bienc_cli.cluster.keywords, bienc_cli.cluster.plot\n"
        "heavy = ('sklearn', 'scipy', 'matplotlib', 'numpy', 'pyarrow', 'threadpoolctl')\n"
        "print(','.join(m for m in heavy if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


# --- organize -----------------------------------------------------------------------------


def test_folder_names_are_safe():
    cluster = clustering.Cluster(3, 4, ["Crème", "brûlée/torch", "sugar", "x"], "", [], 0.5)
    assert folder_name(cluster, 2) == "03-creme-brulee-torch-sugar"
    assert folder_name(clustering.Cluster(0, 1, [], "", [], None), 3) == "000-cluster"
    assert slug("../../etc passwd") == "etc-passwd"


# --- the command, end to end on sample_corpus/ with the fake encoder -----------------------


@pytest.fixture
def sample_index(tmp_path, sample_copy, fake_encoder):
    root = tmp_path / "idx"
    result = bienc("index", sample_copy, "--index", root, "--quiet", "--id-column", "id")
    assert result.exit_code == 0, result.output
    return root


def _json(result):
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_cluster_sources_with_a_temporary_index(tmp_path, sample_copy, fake_encoder, monkeypatch):
    import tempfile

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    monkeypatch.chdir(tmp_path)
    data = _json(bienc("cluster", sample_copy, "-f", "json", "--id-column", "id"))
    documents = data["documents"]
    # 34 files with text and 15 FAQ rows: the empty file and the row with no text are skipped
    assert data["n_documents"] == len(documents) == 49
    assert {d["row_id"] for d in documents if d["row_id"]} == FAQ_IDS
    assert sum(c["size"] for c in data["clusters"]) == 49
    assert data["clusters"] and all(c["keywords"] for c in data["clusters"])
    assert 2 <= data["k_choice"]["k"] <= 7 and data["k_choice"]["criterion"].startswith(
        "silhouette"
    )
    for doc in documents:
        assert 0 <= doc["distance"] <= 2 and doc["probability"] is None
    assert list(scratch.iterdir()) == []  # the temporary index is gone
    assert not (tmp_path / ".bienc").exists()


def test_cluster_reuses_stored_vectors_without_a_model(sample_index, monkeypatch):
    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr("bienc_cli.indexing.run.load_encoder", no_model)
    monkeypatch.setattr("bienc_cli.query.search.load_encoder", no_model)
    data = _json(bienc("cluster", "--index", sample_index, "-f", "json", "-n", "5"))
    assert data["n_clusters"] == len(data["clusters"]) == 5
    assert data["params"] == {"seed": 0, "k": 5}
    for record in data["clusters"]:
        assert len(record["representatives"]) == min(3, record["size"])
        assert len(record["keywords"]) <= 5
        assert record["label"] == (", ".join(record["keywords"][:3]) or "(no keywords)")
    assert sum(len(record["keywords"]) == 5 for record in data["clusters"]) >= 3


def test_same_seed_same_output(sample_index):
    first = bienc("cluster", "--index", sample_index, "-f", "json", "--seed", "4")
    second = bienc("cluster", "--index", sample_index, "-f", "json", "--seed", "4")
    assert first.stdout == second.stdout


def test_formats(sample_index, tmp_path):
    jsonl = bienc("cluster", "--index", sample_index, "-f", "jsonl", "-n", "4")
    records = [json.loads(line) for line in jsonl.stdout.splitlines()]
    assert len(records) == 49 and {"path", "cluster", "label", "distance"} <= set(records[0])
    rows = list(
        csv.DictReader(io.StringIO(bienc("cluster", "-i", sample_index, "-f", "csv").stdout))
    )
    assert len(rows) == 49 and set(rows[0]) >= {"path", "row_id", "cluster", "label", "distance"}
    tsv = bienc("cluster", "-i", sample_index, "-f", "tsv", "-n", "4").stdout.splitlines()
    assert len(tsv) == 49 and all(len(line.split("\t")) == 4 for line in tsv)
    table = bienc("cluster", "-i", sample_index, "-f", "table", "-n", "4")
    assert "nearest the centre" in table.stdout and "49 documents, 4 clusters" in table.stdout
    assert "49 documents in 4 clusters (kmeans, K=4)" in table.stderr


def test_output_file_takes_its_format_from_the_suffix(sample_index, tmp_path):
    import pyarrow.parquet as pq

    target = tmp_path / "clusters.parquet"
    result = bienc("cluster", "-i", sample_index, "-o", target, "-n", "3")
    assert result.exit_code == 0 and result.stdout == ""
    table = pq.read_table(target)
    assert table.num_rows == 49 and set(table["cluster"].to_pylist()) == {0, 1, 2}
    as_json = tmp_path / "clusters.json"
    assert bienc("cluster", "-i", sample_index, "-o", as_json).exit_code == 0
    assert len(json.loads(as_json.read_text())["documents"]) == 49


def test_hdbscan_records_carry_outliers_and_strengths(sample_index):
    data = _json(
        bienc(
            "cluster", "-i", sample_index, "-M", "hdbscan", "--min-cluster-size", "3", "-f", "json"
        )
    )
    assert data["method"] == "hdbscan" and data["params"]["min_cluster_size"] == 3
    assert data["n_outliers"] == sum(1 for d in data["documents"] if d["cluster"] == -1)
    for doc in data["documents"]:
        assert 0 <= doc["probability"] <= 1
        assert (doc["distance"] is None) == (doc["cluster"] == -1)
    attached = _json(
        bienc("cluster", "-i", sample_index, "-M", "hdbscan", "--min-cluster-size", "3",
              "--attach-outliers", "-f", "json")
    )  # fmt: skip
    assert attached["n_outliers"] == 0


def test_agglomerative_through_the_command(sample_index):
    data = _json(bienc("cluster", "-i", sample_index, "-M", "agglomerative", "-f", "json"))
    assert data["params"]["linkage"] == "average" and data["k_choice"]["k"] == data["n_clusters"]
    cut = _json(
        bienc("cluster", "-i", sample_index, "-M", "agglomerative", "--threshold", "0.99",
              "--linkage", "complete", "-f", "json")
    )  # fmt: skip
    assert cut["params"] == {"seed": 0, "linkage": "complete", "threshold": 0.99}
    assert "k_choice" not in cut


def test_plot_from_the_command(sample_index, tmp_path):
    png, page = tmp_path / "map.png", tmp_path / "map.html"
    result = bienc("cluster", "-i", sample_index, "-f", "tsv", "--plot", png, "--plot", page)
    assert result.exit_code == 0, result.output
    assert png.stat().st_size > 10_000 and "<svg" in page.read_text()


def _digests(folder):
    return {
        p: hashlib.sha256(open(p, "rb").read()).hexdigest()
        for p in sorted(str(f) for f in folder.rglob("*") if f.is_file())
    }


def test_organize_makes_folders_of_links_and_never_touches_originals(
    sample_index, sample_copy, tmp_path
):
    before = _digests(sample_copy)
    target = tmp_path / "by-topic"
    result = bienc("cluster", "-i", sample_index, "-n", "5", "-f", "json", "--organize", target)
    data = _json(result)
    assert "organized 49 documents into 5 folders" in result.stderr
    folders = sorted(p.name for p in target.iterdir())
    assert len(folders) == 5 and all(name[:3] in {f"0{i}-" for i in range(5)} for name in folders)
    entries = [p for p in target.rglob("*") if not p.is_dir()]
    assert len(entries) == 49
    links = [p for p in entries if p.is_symlink()]
    assert len(links) == 34 and all(os.path.isabs(os.readlink(p)) for p in links)
    rows = [p for p in entries if not p.is_symlink()]
    assert sorted(p.name for p in rows) == sorted(f"{row_id}.txt" for row_id in FAQ_IDS)
    # Both packing lists land in their cluster under their own names.
    names = {p.name for p in links}
    assert {"packing-list.md", "packing-list-2023.md"} <= names
    first = data["clusters"][0]
    folder = next(target.glob("00-*"))
    assert len(list(folder.iterdir())) == first["size"]
    assert _digests(sample_copy) == before

    again = bienc("cluster", "-i", sample_index, "-n", "5", "--organize", target)
    assert again.exit_code == ExitStatus.USAGE and "not empty" in again.stderr
    forced = bienc("cluster", "-i", sample_index, "-n", "5", "--organize", target, "--force")
    assert forced.exit_code == 0 and len([p for p in target.rglob("*") if not p.is_dir()]) == 49
    assert _digests(sample_copy) == before


def test_organize_copy(sample_index, sample_copy, tmp_path):
    target = tmp_path / "copies"
    result = bienc("cluster", "-i", sample_index, "-n", "2", "--organize", target, "--copy", "-q")
    assert result.exit_code == 0 and result.stderr == ""
    files = [p for p in target.rglob("*") if p.is_file()]
    assert len(files) == 49 and not any(p.is_symlink() for p in files)
    brulee = next(p for p in files if p.name == "creme-brulee.txt")
    assert brulee.read_bytes() == (sample_copy / "cooking" / "creme-brulee.txt").read_bytes()


@pytest.mark.parametrize("copy", [False, True])
def test_organize_force_never_overwrites_or_removes_what_is_there(
    sample_index, sample_copy, tmp_path, copy
):
    """--force adds to DIR: files bienc did not write there stay byte for byte; a document
    whose name is taken by one gets the next free name; what bienc wrote is left as it is."""
    originals = _digests(sample_copy)
    target = tmp_path / "by-topic"
    args = ["cluster", "-i", sample_index, "-n", "2", "--organize", target, "-q"]
    args += ["--copy"] if copy else []
    assert bienc(*args).exit_code == 0
    brulee = next(target.rglob("creme-brulee.txt"))
    row = next(target.rglob("faq-009.txt"))
    for mine in (brulee, row):
        mine.unlink()
        mine.write_text("my own notes, not a document\n")
    (brulee.parent / "todo.md").write_text("mine too\n")
    before = _digests(target)
    entries = len([p for p in target.rglob("*") if not p.is_dir()])
    assert bienc(*args, "--force").exit_code == 0
    after = _digests(target)
    assert {p: d for p, d in after.items() if p in before} == before  # nothing overwritten
    assert (brulee.parent / "creme-brulee-2.txt").read_bytes() == (
        sample_copy / "cooking" / "creme-brulee.txt"
    ).read_bytes()
    assert (row.parent / "faq-009-2.txt").exists()
    # everything else was already there: left as it was, not doubled
    assert len([p for p in target.rglob("*") if not p.is_dir()]) == entries + 2
    assert _digests(sample_copy) == originals  # originals only read


def test_organize_never_writes_through_a_link(sample_index, sample_copy, tmp_path):
    target = tmp_path / "by-topic"
    args = ["cluster", "-i", sample_index, "-n", "2", "--organize", target, "-q"]
    assert bienc(*args).exit_code == 0
    folder = next(p for p in target.iterdir())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for p in folder.iterdir():
        p.unlink()
    folder.rmdir()
    folder.symlink_to(elsewhere)  # a cluster folder that leads out of DIR
    originals = _digests(sample_copy)
    result = bienc(*args, "--force")
    assert result.exit_code == ExitStatus.USAGE and "is a link or a file" in result.stderr
    assert not list(elsewhere.iterdir())
    assert _digests(sample_copy) == originals


def test_organize_into_the_corpus_itself_leaves_the_documents_alone(
    sample_index, sample_copy, tmp_path
):
    """DIR inside the corpus, --copy, then again with --force: the copies are found to be
    the documents' bytes and left as they are; no original changes."""
    before = _digests(sample_copy)
    target = sample_copy / "by-topic"
    args = ["cluster", "-i", sample_index, "-n", "2", "--organize", target, "--copy", "-q"]
    assert bienc(*args).exit_code == 0
    copies = _digests(target)
    assert bienc(*args, "--force").exit_code == 0
    assert _digests(target) == copies
    assert {p: d for p, d in _digests(sample_copy).items() if p in before} == before


APPLES = "Apples and pears grow in the orchard by the river.\n"
ROCKETS = "Rockets fly to orbit around the distant planets.\n"


@pytest.fixture
def two_topics(tmp_path, fake_encoder):
    """f/ of two topics, two identical documents each, indexed: (index, folder)."""
    folder = tmp_path / "f"
    folder.mkdir()
    for name, text in {"a": APPLES, "c": APPLES, "r1": ROCKETS, "r2": ROCKETS}.items():
        (folder / f"{name}.txt").write_text(text)
    index = tmp_path / "fidx"
    assert bienc("index", folder, "--index", index, "-q").exit_code == 0
    return index, folder


def _entries(target):
    return sorted(str(p.relative_to(target)) for p in target.rglob("*") if not p.is_dir())


@pytest.mark.parametrize("copy", [False, True], ids=["links", "copies"])
def test_organize_leaves_out_what_changed_or_went_since_it_was_indexed(two_topics, tmp_path, copy):
    """A stale index: the changed and the removed document are named, left out of the
    folders (no dangling link, no new text under the old topic), and the exit is 3."""
    index, folder = two_topics
    (folder / "c.txt").write_text("Something else entirely.\n")
    (folder / "r1.txt").unlink()
    target = tmp_path / "org"
    args = ["cluster", "-i", index, "-n", "2", "-f", "tsv", "--organize", target]
    result = bienc(*args, *(["--copy"] if copy else []))
    assert result.exit_code == ExitStatus.PARTIAL, result.output
    assert f"{folder / 'c.txt'} changed since it was indexed" in result.stderr
    assert f"{folder / 'r1.txt'} is gone since it was indexed" in result.stderr
    assert result.stderr.count("left out of --organize") == 2
    assert "re-index, then cluster again" in result.stderr
    assert "organized 2 documents" in result.stderr and "2 left out" in result.stderr
    assert len(result.stdout.splitlines()) == 4  # the clusters, as indexed
    assert [Path(e).name for e in _entries(target)] == ["a.txt", "r2.txt"]
    for entry in target.rglob("*.txt"):
        assert entry.is_symlink() != copy and entry.read_text() in (APPLES, ROCKETS)


def test_cluster_warns_of_a_stale_index_without_organize(two_topics):
    index, folder = two_topics
    (folder / "r1.txt").unlink()
    result = bienc("cluster", "-i", index, "-n", "2", "-f", "tsv", "-q")
    assert result.exit_code == ExitStatus.PARTIAL
    assert "r1.txt is gone since it was indexed: clustered as indexed\n" in result.stderr


def test_a_touched_document_is_not_stale(two_topics, tmp_path):
    index, folder = two_topics
    os.utime(folder / "c.txt", ns=(10**18, 10**18))  # the same text, another mtime
    result = bienc("cluster", "-i", index, "-n", "2", "--organize", tmp_path / "org", "-q")
    assert result.exit_code == 0 and result.stderr == ""
    assert len(_entries(tmp_path / "org")) == 4


def test_organize_leaves_out_a_changed_table_row(tmp_path, fake_encoder):
    folder = tmp_path / "t"
    folder.mkdir()
    rows = folder / "rows.jsonl"
    rows.write_text(json.dumps({"text": APPLES}) + "\n" + json.dumps({"text": ROCKETS}) + "\n")
    index = tmp_path / "tidx"
    assert bienc("index", folder, "--index", index, "-q").exit_code == 0
    rows.write_text(json.dumps({"text": APPLES}) + "\n" + json.dumps({"text": "Other.\n"}) + "\n")
    target = tmp_path / "org"
    result = bienc("cluster", "-i", index, "-n", "2", "--organize", target, "-q")
    assert result.exit_code == ExitStatus.PARTIAL
    assert "rows.jsonl#1 changed since it was indexed" in result.stderr
    [row] = [p for p in target.rglob("*") if p.is_file()]
    assert row.name == "0.txt" and row.read_text() == APPLES.strip()


def test_organize_copy_names_a_source_that_vanishes_while_it_is_copied(
    two_topics, tmp_path, monkeypatch
):
    from bienc_cli.cluster import organize as organizing

    index, folder = two_topics
    vanishing = str(folder / "a.txt")

    def racing_open(path, *args, **kwargs):
        if os.fspath(path) == vanishing:
            os.unlink(vanishing)  # removed after the check, before the copy
        return open(path, *args, **kwargs)

    monkeypatch.setattr(organizing, "open", racing_open, raising=False)
    target = tmp_path / "org"
    result = bienc("cluster", "-i", index, "-n", "2", "--organize", target, "--copy")
    assert result.exit_code == ExitStatus.PARTIAL, result.output
    assert f"left out of --organize: {vanishing} is gone since it was indexed" in result.stderr
    assert "No such file" not in result.stderr and "organized 3 documents" in result.stderr
    assert [Path(e).name for e in _entries(target)] == ["c.txt", "r1.txt", "r2.txt"]


@pytest.mark.parametrize("how", ["links", "copies", "rows"])
def test_organize_never_writes_into_a_name_taken_after_it_looked(
    tmp_path, fake_encoder, monkeypatch, how
):
    """A link planted at the destination between organize's look and its write (a race): the
    planted link and what it points to are left as they are; the document takes the next name."""
    folder = tmp_path / "f"
    folder.mkdir()
    if how == "rows":
        (folder / "rows.jsonl").write_text(json.dumps({"text": APPLES}) + "\n")
        name, expected = "0.txt", APPLES.strip().encode()  # a row's text, as indexed
    else:
        (folder / "a.txt").write_text(APPLES)
        name, expected = "a.txt", APPLES.encode()
    index = tmp_path / "idx"
    assert bienc("index", folder, "--index", index, "-q").exit_code == 0
    victim = tmp_path / "victim.txt"
    victim.write_text("not bienc's\n")
    target = tmp_path / "org"
    real_lexists = os.path.lexists
    planted = []

    def racing_lexists(path):
        found = real_lexists(path)
        if not found and not planted and os.path.basename(path) == name:
            os.symlink(victim, path)
            planted.append(Path(path))
        return found

    monkeypatch.setattr(os.path, "lexists", racing_lexists)
    args = ["cluster", "-i", index, "-n", "1", "--organize", target, "-q"]
    result = bienc(*args, *(["--copy"] if how == "copies" else []))
    assert result.exit_code == 0, result.output
    [link] = planted
    assert os.readlink(link) == str(victim) and victim.read_text() == "not bienc's\n"
    filed = link.with_name(name.replace(".txt", "-2.txt"))
    assert filed.read_bytes() == expected and filed.is_symlink() == (how == "links")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["SRC", "--index", "IDX"], "not both"),
        (["-i", "IDX", "-M", "spectral"], "unknown --method"),
        (["-i", "IDX", "-f", "xml"], "unknown --format"),
        (["-i", "IDX", "-f", "parquet"], "needs --output"),
        (["-i", "IDX", "--plot", "map.gif"], "--plot map.gif"),
        (["-i", "IDX", "-n", "500"], "more clusters than documents"),
        (["-i", "IDX", "--copy"], "go with --organize"),
        (["-i", "IDX", "--text-column", "text"], "--text-column needs SOURCES"),
        (["-i", "IDX", "--threshold", "0.3"], "agglomerative only"),
    ],
)
def test_exit_2_on_usage_errors(sample_index, sample_copy, args, message):
    args = [
        str(sample_index) if a == "IDX" else str(sample_copy) if a == "SRC" else a for a in args
    ]
    result = bienc("cluster", *args)
    assert result.exit_code == ExitStatus.USAGE, result.output
    assert message in result.stderr and "Traceback" not in result.output


def test_exit_2_on_organize_into_a_file(sample_index, tmp_path):
    target = tmp_path / "file.txt"
    target.write_text("x")
    result = bienc("cluster", "-i", sample_index, "--organize", target)
    assert result.exit_code == ExitStatus.USAGE and "not a folder" in result.stderr


def test_exit_4_without_an_index(tmp_path):
    result = bienc("cluster", "--index", tmp_path / "nothing")
    assert result.exit_code == ExitStatus.NO_INDEX and "no bienc index" in result.stderr


def test_exit_2_when_the_sources_hold_no_text(tmp_path, fake_encoder):
    (tmp_path / "empty.txt").write_text("")
    result = bienc("cluster", tmp_path / "empty.txt")
    assert result.exit_code == ExitStatus.USAGE and "no text to cluster" in result.stderr


def test_exit_3_when_a_source_cannot_be_read(tmp_path, corpus, fake_encoder, unreadable_cats):
    result = bienc("cluster", corpus, "-f", "jsonl", "-n", "2")
    assert result.exit_code == ExitStatus.PARTIAL
    assert len(result.stdout.splitlines()) == 3
    assert "cats.md: permission denied" in result.stderr


def test_paths_from_stdin(corpus, fake_encoder):
    paths = "\n".join(str(p) for p in sorted(corpus.rglob("*.md"))) + "\n"
    result = bienc("cluster", "-", "-f", "jsonl", "-n", "2", input=paths)
    assert result.exit_code == 0, result.output
    assert sorted(
        json.loads(line)["path"].rsplit("/", 1)[-1] for line in result.stdout.splitlines()
    ) == [
        "bread.md",
        "cats.md",
    ]


# --- the real model ------------------------------------------------------------------------


@pytest.mark.slow
def test_real_model_separates_two_topics(tmp_path):
    sources = [SAMPLE_CORPUS / "astronomy", SAMPLE_CORPUS / "programming"]
    result = bienc("cluster", *sources, "-f", "json", "-n", "2")
    data = _json(result)
    truth = [d["path"].split("/")[-2] for d in data["documents"]]
    assert adjusted_rand_score(truth, [d["cluster"] for d in data["documents"]]) == 1.0
    keywords = {word for c in data["clusters"] for word in c["keywords"]}
    assert keywords & {"telescope", "moon", "sky", "planet", "stars", "mars"}
    assert keywords & {"python", "code", "git", "function", "test", "branch"}
