"""Dedup detection on synthetic vectors (milliseconds), then through indexing and the CLI."""

from __future__ import annotations

import csv
import io
import json
import os

import numpy as np
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from bienc_cli.cli.main import app
from bienc_cli.dedup import detect as dedup
from bienc_cli.dedup.calibrate import calibrate
from bienc_cli.dedup.corpus import DedupRequest
from bienc_cli.dedup.detect import DedupOptions, DocRecord
from bienc_cli.dedup.records import calibration_record
from bienc_cli.dedup.run import run_dedup
from bienc_cli.dedup.tables import write_table_output
from bienc_cli.errors import ExitStatus, UsageError

runner = CliRunner()


def bienc(*args, input=None):
    return runner.invoke(app, [str(a) for a in args], input=input, catch_exceptions=False)


def _unit(x):
    x = np.asarray(x, dtype=np.float32)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _records(n, **fields):
    return [
        DocRecord(
            doc_id=f"/c/d{i}",
            path=f"/c/d{i}.txt",
            doc_hash=f"h{i}",
            order=i,
            **{k: v[i] for k, v in fields.items()},
        )
        for i in range(n)
    ]


def _around(rng, base, cos):
    """A unit vector at cosine ``cos`` from the unit vector ``base``."""
    noise = rng.normal(size=base.shape).astype(np.float32)
    noise -= (noise @ base) * base
    noise /= np.linalg.norm(noise)
    return _unit(base * cos + noise * np.sqrt(1 - cos**2))


def _clustered(n, dim=64, seed=0, copies=30):
    rng = np.random.default_rng(seed)
    centres = _unit(rng.normal(size=(max(2, n // 40), dim)))
    vectors = np.stack([_around(rng, centres[rng.integers(len(centres))], 0.7) for _ in range(n)])
    for copy in range(copies):
        vectors[n - 1 - copy] = _around(rng, vectors[copy], rng.uniform(0.85, 0.99))
    return vectors


def _brute_force(vectors, threshold):
    sims = vectors @ vectors.T
    i, j = np.nonzero(np.triu(sims >= threshold, k=1))
    return set(zip(i.tolist(), j.tolist()))


# -- candidates ------------------------------------------------------------------------------


@pytest.mark.parametrize("threshold", [0.8, 0.9, 0.95])
def test_near_pairs_match_exact_search(threshold):
    vectors = _clustered(1500)
    i, j, sims = dedup.near_pairs(vectors, threshold)
    found = set(zip(i.tolist(), j.tolist()))
    assert found == _brute_force(vectors, threshold)
    assert np.allclose(sims, np.einsum("ij,ij->i", vectors[i], vectors[j]))
    assert (sims >= threshold).all()


def test_a_cluster_larger_than_k_is_found_whole():
    rng = np.random.default_rng(3)
    base = _unit(rng.normal(size=32))
    vectors = np.stack([_around(rng, base, 0.995) for _ in range(40)])
    vectors = np.concatenate([vectors, _unit(rng.normal(size=(200, 32)))])
    i, j, _ = dedup.near_pairs(vectors, 0.95, neighbours=3)
    assert set(zip(i.tolist(), j.tolist())) == _brute_force(vectors, 0.95)
    assert len(i) == 40 * 39 // 2


def test_same_input_same_groups():
    vectors = _clustered(2000, copies=100)
    records = _records(2000, length=list(range(2000)))
    runs = [dedup.detect(vectors, records, DedupOptions(keep="longest")) for _ in range(3)]
    assert len({repr(run.groups) for run in runs}) == 1 and runs[0].groups


def test_fewer_than_two_documents_have_no_pairs():
    for n in (0, 1):
        i, j, sims = dedup.near_pairs(np.zeros((n, 8), np.float32), 0.5)
        assert len(i) == len(j) == len(sims) == 0


# -- pairs and groups ------------------------------------------------------------------------


def _chain():
    """A~B and B~C at 0.92, but A and C only 0.7 apart."""
    a = np.array([1.0, 0.0, 0.0])
    c = np.array([0.7, np.sqrt(1 - 0.49), 0.0])
    b = _unit(a + c)  # halfway: cos(a, b) = cos(b, c) = sqrt((1 + 0.7) / 2) = 0.922
    return _unit(np.stack([a, b, c]))


def test_groups_do_not_chain():
    vectors = _chain()
    assert vectors[0] @ vectors[2] == pytest.approx(0.7)
    detection = dedup.detect(vectors, _records(3), DedupOptions(threshold=0.9))
    assert {(p.a, p.b) for p in detection.pairs} == {(0, 1), (1, 2)}
    # A is kept first; B joins it; C is not close to A, and B is taken: C stays on its own.
    assert [(g.keeper, [m.index for m in g.members]) for g in detection.groups] == [(0, [1])]


def test_the_middle_of_a_chain_keeps_both_ends():
    records = _records(3, length=[10, 50, 10])
    detection = dedup.detect(_chain(), records, DedupOptions(threshold=0.9, keep="longest"))
    [group] = detection.groups
    assert group.keeper == 1 and sorted(m.index for m in group.members) == [0, 2]
    assert all(m.similarity >= 0.9 for m in group.members)


def test_exact_copies_share_a_group_with_their_near_copies():
    rng = np.random.default_rng(0)
    base = _unit(rng.normal(size=16))
    vectors = np.stack([base, base, _around(rng, base, 0.95), _unit(rng.normal(size=16))])
    records = _records(4)
    records[1] = DocRecord("/c/copy", "/c/copy.txt", doc_hash="h0", order=1)
    detection = dedup.detect(vectors, records, DedupOptions(threshold=0.9))
    [group] = detection.groups
    assert group.keeper == 0
    assert [(m.index, m.match) for m in group.members] == [(1, "exact"), (2, "near")]
    assert group.members[0].similarity == 1.0
    assert detection.duplicates == 2


def test_exact_copies_are_paired_with_their_first_copy_only():
    vectors = _unit(np.ones((5, 4)))
    records = [DocRecord(f"/c/{i}", f"/c/{i}", doc_hash="same", order=i) for i in range(5)]
    pairs = dedup.find_pairs(vectors, records, DedupOptions())
    assert [(p.a, p.b, p.match) for p in pairs] == [(0, k, "exact") for k in range(1, 5)]


@pytest.mark.parametrize(
    ("keep", "expected"),
    [
        ("first", 0),
        ("oldest", 2),
        ("newest", 1),
        ("longest", 1),
        ("shortest", 2),
        ("shortest-path", 1),
    ],
)
def test_keep_policies(keep, expected):
    vectors = _unit(np.ones((3, 8)))
    records = [
        DocRecord("/c/a/x.txt", "/c/a/x.txt", doc_hash="h", mtime_ns=200, length=50, order=0),
        DocRecord("/c/y.txt", "/c/y.txt", doc_hash="h", mtime_ns=300, length=90, order=1),
        DocRecord("/c/a/bb/z.txt", "/c/a/bb/z.txt", doc_hash="h", mtime_ns=100, length=10, order=2),
    ]
    [group] = dedup.detect(vectors, records, DedupOptions(keep=keep)).groups
    assert group.keeper == expected


def test_ties_fall_back_to_source_order():
    vectors = _unit(np.ones((3, 8)))
    records = [DocRecord(f"/c/{i}", f"/c/{i}", doc_hash="h", order=2 - i) for i in range(3)]
    [group] = dedup.detect(vectors, records, DedupOptions(keep="longest")).groups
    assert group.keeper == 2


def test_reference_documents_are_kept_and_never_members():
    vectors = _unit(np.ones((4, 8)))
    records = [
        DocRecord(f"/c/{i}", f"/c/{i}", doc_hash="h", order=i, reference=i in (2, 3))
        for i in range(4)
    ]
    groups = dedup.detect(vectors, records, DedupOptions(keep="first")).groups
    assert [g.keeper for g in groups] == [2]
    assert sorted(m.index for m in groups[0].members) == [0, 1]  # 3: reference, left alone


def test_table_rows_and_files_are_not_compared():
    vectors = _unit(np.ones((3, 8)))
    records = [
        DocRecord("/c/a.txt", "/c/a.txt", doc_hash="h", order=0),
        DocRecord("/c/t.jsonl#0", "/c/t.jsonl", kind="table", row_id="0", doc_hash="h", order=1),
        DocRecord("/c/t.jsonl#1", "/c/t.jsonl", kind="table", row_id="1", doc_hash="h", order=2),
    ]
    detection = dedup.detect(vectors, records, DedupOptions())
    assert [(g.keeper, [m.index for m in g.members]) for g in detection.groups] == [(1, [2])]


def test_the_passage_check_separates_same_topic_from_copies():
    """Means alike (0.95) but no passage alike: not duplicates; a shared passage: duplicates."""
    rng = np.random.default_rng(5)
    topic = _unit(rng.normal(size=64))
    a_chunks = np.stack([_around(rng, topic, 0.8) for _ in range(6)])
    b_chunks = np.stack([_around(rng, topic, 0.8) for _ in range(6)])
    c_chunks = np.concatenate([a_chunks[:3] * 0.999 + 0.001 * b_chunks[:3], b_chunks[3:]])
    c_chunks = _unit(c_chunks)
    chunks = {0: a_chunks, 1: b_chunks, 2: c_chunks}
    vectors = _unit(np.stack([_unit(c.mean(axis=0)) for c in chunks.values()]))
    assert vectors[0] @ vectors[1] > 0.9
    records = [
        DocRecord(f"/c/{i}", f"/c/{i}", doc_hash=f"h{i}", n_chunks=6, order=i) for i in range(3)
    ]
    options = DedupOptions(threshold=0.9)
    without = dedup.find_pairs(vectors, records, options)
    with_check = dedup.find_pairs(vectors, records, options, chunks=chunks.__getitem__)
    assert (0, 1) in {(p.a, p.b) for p in without}
    assert (0, 1) not in {(p.a, p.b) for p in with_check}
    assert (0, 2) in {(p.a, p.b) for p in with_check}
    assert all(p.passage >= 0.9 for p in with_check)


def test_options_are_checked():
    with pytest.raises(UsageError):
        DedupOptions(threshold=1.5)
    with pytest.raises(UsageError):
        DedupOptions(keep="largest")
    with pytest.raises(UsageError):
        DedupOptions(neighbours=0)


# -- properties ------------------------------------------------------------------------------


@st.composite
def _corpora(draw):
    n = draw(st.integers(2, 40))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    vectors = _unit(rng.normal(size=(n, 12)))
    for _ in range(draw(st.integers(0, n // 2))):  # near and exact copies of earlier documents
        source, target = rng.integers(0, n, 2)
        vectors[target] = _around(rng, vectors[source], rng.uniform(0.8, 1.0))
    hashes = [f"h{i}" for i in range(n)]
    for _ in range(draw(st.integers(0, 3))):
        source, target = rng.integers(0, n, 2)
        vectors[target], hashes[target] = vectors[source], hashes[source]
    records = [
        DocRecord(
            f"/c/{i}",
            f"/c/{i}",
            doc_hash=hashes[i],
            order=i,
            length=int(rng.integers(1, 100)),
            mtime_ns=int(rng.integers(1, 100)),
            reference=bool(rng.random() < 0.15),
        )
        for i in range(n)
    ]
    return vectors, records


_threshold = st.floats(0.6, 0.99)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_corpora(), _threshold, _threshold)
def test_a_higher_threshold_gives_a_subset_of_the_pairs(corpus, t1, t2):
    vectors, records = corpus
    low, high = sorted((t1, t2))
    pairs_low = {
        (p.a, p.b) for p in dedup.find_pairs(vectors, records, DedupOptions(threshold=low))
    }
    pairs_high = {
        (p.a, p.b) for p in dedup.find_pairs(vectors, records, DedupOptions(threshold=high))
    }
    assert pairs_high <= pairs_low


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_corpora(), _threshold, st.sampled_from(dedup.KEEP_POLICIES))
def test_groups_are_sound(corpus, threshold, keep):
    vectors, records = corpus
    detection = dedup.detect(vectors, records, DedupOptions(threshold=threshold, keep=keep))
    seen = set()
    for group in detection.groups:
        ids = [group.keeper] + [m.index for m in group.members]
        assert not seen & set(ids), "a document is in two groups"
        seen |= set(ids)
        for m in group.members:
            assert not records[m.index].reference
            if m.match == "exact":
                assert records[m.index].doc_hash == records[group.keeper].doc_hash
            else:  # checked against the keeper itself: no chaining
                assert float(vectors[m.index] @ vectors[group.keeper]) >= threshold - 1e-5
    # no keeper is anyone's duplicate: whatever is removed has a copy that stays
    keepers = {g.keeper for g in detection.groups}
    assert not keepers & {m.index for g in detection.groups for m in g.members}


# -- calibration -----------------------------------------------------------------------------


def test_calibration_shows_the_nearest_neighbour_distribution():
    vectors = _clustered(400, copies=20)
    records = _records(400)
    records[5] = DocRecord("/c/dup", "/c/dup.txt", doc_hash="h0", order=5)
    vectors[5] = vectors[0]
    calibration = calibrate(vectors, records, thresholds=(0.8, 0.9))
    assert calibration.exact_copies == 1
    assert sum(count for _, _, count in calibration.bins) == 399
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -1)
    distinct = [i for i in range(400) if i != 5]
    exact = sims[np.ix_(distinct, distinct)].max(axis=1)
    assert np.allclose(np.sort(calibration.nearest), np.sort(exact), atol=1e-5)
    record = calibration_record(calibration)
    for example in record["thresholds"]:
        assert example["above"]["similarity"] >= example["threshold"]
        assert example["below"]["similarity"] < example["threshold"]
    json.dumps(record)  # plain data


# -- through indexing (fake encoder) ---------------------------------------------------------


@pytest.fixture
def dup_folder(tmp_path):
    root = tmp_path / "docs"
    (root / "archive").mkdir(parents=True)
    text = "Sourdough starter needs flour and water fed every day at room temperature.\n"
    (root / "starter.md").write_text(text)
    (root / "archive" / "starter-copy.md").write_text(text)
    # the fake encoder is a bag of words: the same words in another order are a near copy
    (root / "starter-reworded.txt").write_text(
        "Fed every day at room temperature, sourdough starter needs flour and water.\n"
    )
    (root / "rockets.txt").write_text("Rockets burn fuel to reach orbit around the earth.\n")
    (root / "cats.txt").write_text("Cats purr and sleep most of the day in the sun.\n")
    return root


def test_run_dedup_indexes_sources_in_a_temporary_index(
    dup_folder, fake_encoder, tmp_path, monkeypatch
):
    import tempfile

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    request = DedupRequest(sources=[str(dup_folder)])
    run = run_dedup(request, DedupOptions(threshold=0.9))
    [group] = run.detection.groups
    records = run.detection.records
    assert records[group.keeper].path.endswith("archive/starter-copy.md")  # first by path
    members = {records[m.index].path.rsplit("/", 1)[1]: m.match for m in group.members}
    assert members == {"starter.md": "exact", "starter-reworded.txt": "near"}
    assert run.corpus.roots == [str(dup_folder)]
    assert not list(scratch.iterdir())  # its own temporary index, and only that, is gone


def test_run_dedup_on_an_index_loads_no_model(dup_folder, fake_encoder, tmp_path, monkeypatch):
    index = tmp_path / "idx"
    assert bienc("index", dup_folder, "--index", index, "-q").exit_code == 0

    def no_model(model):
        raise AssertionError("dedup --index must not load a model")

    monkeypatch.setattr("bienc_cli.indexing.run.load_encoder", no_model)
    run = run_dedup(DedupRequest(index=index), DedupOptions(threshold=0.9))
    assert run.detection.duplicates == 2
    assert run.corpus.roots == [str(dup_folder)]


def test_exact_and_reworded_copies_in_the_sample_corpus(sample_copy, fake_encoder):
    run = run_dedup(DedupRequest(sources=[str(sample_copy)]), DedupOptions())
    records = run.detection.records
    exact = [
        (records[g.keeper].path, records[m.index].path)
        for g in run.detection.groups
        for m in g.members
        if m.match == "exact"
    ]
    assert any(
        k.endswith("packing-list-2023.md") and m.endswith("travel/packing-list.md")
        for k, m in exact
    )


def test_table_output_drops_duplicate_rows(tmp_path, fake_encoder):
    table = tmp_path / "rows.jsonl"
    rows = [
        {"id": "a", "text": "the cat sat on the mat", "n": 1},
        {"id": "b", "text": "a rocket went to the moon", "n": 2},
        {"id": "c", "text": "the cat sat on the mat", "n": 3},
        {"id": "d", "text": "on the mat the cat sat", "n": 4},
    ]
    table.write_text("".join(json.dumps(r) + "\n" for r in rows))
    request = DedupRequest(sources=[str(table)], index_options={"id_column": "id"})
    run = run_dedup(request, DedupOptions(threshold=0.9))
    out = tmp_path / "out" / "clean.parquet"
    written = write_table_output(run.corpus, run.detection, out)
    assert (written.kept, written.removed) == (2, 2)
    kept = pq.read_table(out).to_pylist()
    assert [r["id"] for r in kept] == ["a", "b"] and kept[0]["n"] == 1
    removed = pq.read_table(tmp_path / "out" / "clean.removed.parquet").to_pylist()
    assert {r["id"]: (r["dedup_duplicate_of"], r["dedup_match"]) for r in removed} == {
        "c": ("a", "exact"),
        "d": ("a", "near"),
    }


def test_table_output_needs_table_rows(dup_folder, fake_encoder, tmp_path):
    run = run_dedup(DedupRequest(sources=[str(dup_folder)]), DedupOptions())
    with pytest.raises(UsageError, match="no table rows"):
        write_table_output(run.corpus, run.detection, tmp_path / "x.parquet")
    with pytest.raises(UsageError, match="parquet"):
        write_table_output(run.corpus, run.detection, tmp_path / "x.xlsx")


# -- the command line ------------------------------------------------------------------------


def test_cli_groups_as_json(dup_folder, fake_encoder):
    result = bienc("dedup", dup_folder, "-f", "json", "-t", "0.9")
    assert result.exit_code == ExitStatus.OK, result.output
    [group] = json.loads(result.stdout)
    assert group["keeper"]["doc_id"].endswith("starter-copy.md")
    assert {m["match"] for m in group["members"]} == {"exact", "near"}
    assert all(m["similarity"] >= 0.9 for m in group["members"])
    assert "5 documents, 2 duplicates in 1 group (1 exact)" in result.stderr


def test_cli_exit_code_1_when_nothing_is_duplicated(corpus, fake_encoder):
    result = bienc("dedup", corpus)
    assert result.exit_code == ExitStatus.NO_RESULTS
    assert result.stdout == ""


@pytest.mark.parametrize("fmt", ["tsv", "csv", "jsonl", "ids"])
def test_cli_formats(dup_folder, fake_encoder, fmt):
    out = bienc("dedup", dup_folder, "-f", fmt, "-t", "0.9", "-q").stdout
    if fmt == "tsv":
        lines = [line.split("\t") for line in out.splitlines()]
        assert [line[1] for line in lines] == ["keep", "exact", "near"]
        assert all(line[0] == "1" for line in lines)
    elif fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(out)))
        assert [r["role"] for r in rows] == ["keep", "duplicate", "duplicate"]
    elif fmt == "jsonl":
        assert len(out.splitlines()) == 1 and json.loads(out)["group"] == 1
    else:
        assert sorted(p.rsplit("/", 1)[1] for p in out.splitlines()) == [
            "starter-reworded.txt",
            "starter.md",
        ]


def test_cli_pairs(dup_folder, fake_encoder):
    out = bienc("dedup", dup_folder, "--pairs", "-f", "jsonl", "-t", "0.9").stdout
    pairs = [json.loads(line) for line in out.splitlines()]
    # the exact copy with the first copy of its text; the reworded copy with that text, once
    assert [p["match"] for p in pairs] == ["exact", "near"]
    assert pairs[0]["similarity"] >= pairs[-1]["similarity"]


def test_cli_paths_from_stdin(dup_folder, fake_encoder):
    paths = [dup_folder / "starter.md", dup_folder / "archive" / "starter-copy.md"]
    result = bienc("dedup", "-", "-f", "ids", input="".join(f"{p}\n" for p in paths))
    assert result.exit_code == 0
    assert result.stdout.strip().endswith("starter-copy.md")


def test_cli_table_output_and_ids(tmp_path, fake_encoder):
    table = tmp_path / "faq.csv"
    table.write_text(
        "id,text\nq1,how do I reset my password\nq2,reset my password how do I\nq3,where is the invoice\n"
    )
    out = tmp_path / "clean.csv"
    result = bienc("dedup", table, "--id-column", "id", "-f", "ids", "-o", out)
    assert result.exit_code == 0, result.output
    assert result.stdout == "q2\n"
    assert [r["id"] for r in csv.DictReader(out.open())] == ["q1", "q3"]
    assert "wrote 2 rows" in result.stderr


def test_table_output_writes_through_a_temporary_name_of_its_own(tmp_path, fake_encoder):
    table = tmp_path / "faq.csv"
    table.write_text("id,text\nq1,reset my password\nq2,reset my password\n")
    mine = tmp_path / ".clean.csv.tmp"  # what the temporary file used to be called
    mine.write_text("a file of the user's\n")
    result = bienc("dedup", table, "--id-column", "id", "-o", tmp_path / "clean.csv", "-q")
    assert result.exit_code == 0, result.output
    assert mine.read_text() == "a file of the user's\n"
    assert not list(tmp_path.glob(".clean.csv.tmp-*"))


def test_cli_calibrate(dup_folder, fake_encoder):
    result = bienc("dedup", dup_folder, "--calibrate")
    assert result.exit_code == 0
    assert "nearest neighbour" in result.stdout and "threshold 0.90" in result.stdout
    data = json.loads(bienc("dedup", dup_folder, "--calibrate", "-f", "json").stdout)
    assert data["exact_copies"] == 1 and data["thresholds"][0]["threshold"] == 0.8


@pytest.mark.parametrize(
    "args",
    [
        ["--keep", "largest"],
        ["--threshold", "2"],
        ["-f", "xml"],
        ["--index", "IDX"],  # with a SOURCE
        ["--dry-run"],  # without an action
        ["--calibrate", "--action", "delete"],
        ["--action", "move"],  # without --to
        ["--to", "x"],  # without move
        ["--action", "shred"],
    ],
)
def test_cli_usage_errors(dup_folder, fake_encoder, tmp_path, args):
    args = [str(tmp_path / "idx") if a == "IDX" else a for a in args]
    result = bienc("dedup", dup_folder, *args)
    assert result.exit_code == ExitStatus.USAGE
    assert result.stderr.startswith("bienc: error: ") and "Traceback" not in result.output


def test_cli_missing_index(tmp_path):
    result = bienc("dedup", "--index", tmp_path / "none")
    assert result.exit_code == ExitStatus.NO_INDEX


def test_cli_unreadable_source_is_partial(dup_folder, fake_encoder):
    bad = dup_folder / "bad.jsonl"
    bad.write_text('{"text": "fine row"}\nnot json at all\n')
    result = bienc("dedup", dup_folder, "-t", "0.9", "-q")
    assert result.exit_code == ExitStatus.PARTIAL
    assert "bad.jsonl" in result.stderr


def test_the_help_states_the_default_threshold():
    import typer.main

    command = typer.main.get_command(app).commands["dedup"]  # type: ignore[attr-defined]
    [param] = [p for p in command.params if "--threshold" in p.opts]
    assert f"Default {dedup.DEFAULT_THRESHOLD:.2f}" in param.help


def test_a_reference_folder_outside_the_sources_is_compared_too(dup_folder, tmp_path, fake_encoder):
    reference = tmp_path / "canonical"
    reference.mkdir()
    (reference / "starter.md").write_text((dup_folder / "starter.md").read_text())
    request = DedupRequest(sources=[str(dup_folder)])
    run = run_dedup(request, DedupOptions(threshold=0.9, reference=(str(reference),)))
    [group] = run.detection.groups
    assert run.detection.records[group.keeper].path == str(reference / "starter.md")
    assert len(group.members) == 3
    assert run.corpus.roots == [str(dup_folder)]  # never a root: nothing is done there


def test_input_checks(dup_folder, tmp_path, fake_encoder):
    with pytest.raises(UsageError, match="reference"):
        run_dedup(
            DedupRequest(sources=[str(dup_folder)]),
            DedupOptions(reference=(str(tmp_path / "missing"),)),
        )
    with pytest.raises(UsageError, match="SOURCE"):
        run_dedup(DedupRequest(index=tmp_path, model="other"), DedupOptions())


def test_an_empty_folder_has_no_duplicates(tmp_path, fake_encoder):
    (tmp_path / "empty").mkdir()
    result = bienc("dedup", tmp_path / "empty")
    assert result.exit_code == ExitStatus.NO_RESULTS
    assert "0 documents" in result.stderr


def test_table_output_with_mixed_types_and_no_overwrite(tmp_path, fake_encoder):
    table = tmp_path / "rows.jsonl"
    rows = [
        {"text": "the cat sat on the mat", "extra": 1},
        {"text": "the cat sat on the mat", "extra": "one"},
        {"text": "a rocket went to the moon", "extra": [1, 2]},
    ]
    table.write_text("".join(json.dumps(r) + "\n" for r in rows))
    run = run_dedup(DedupRequest(sources=[str(table)]), DedupOptions())
    with pytest.raises(UsageError, match="overwrite"):
        write_table_output(run.corpus, run.detection, table)
    written = write_table_output(run.corpus, run.detection, tmp_path / "clean.parquet")
    assert (written.kept, written.removed) == (2, 1)
    kept = pq.read_table(tmp_path / "clean.parquet").to_pylist()
    assert [r["text"] for r in kept] == ["the cat sat on the mat", "a rocket went to the moon"]
    [removed] = pq.read_table(tmp_path / "clean.removed.parquet").to_pylist()
    assert removed["dedup_duplicate_of"] == "0" and removed["dedup_match"] == "exact"


@pytest.mark.slow
def test_real_model_finds_a_reworded_copy_and_not_a_neighbour(tmp_path):
    root = tmp_path / "notes"
    root.mkdir()
    (root / "starter.md").write_text(
        "Feed your sourdough starter every day with equal weights of flour and water. "
        "Keep it at room temperature, and discard half before each feeding so that the "
        "jar does not overflow and the yeast stays active."
    )
    (root / "starter-copy.txt").write_text(
        "Every day, feed the sourdough starter equal weights of water and flour. Keep the "
        "jar at room temperature and throw away half before each feeding, so it does not "
        "overflow and the yeast stays lively."
    )
    (root / "bread.md").write_text(
        "A sourdough loaf needs a long, cool proof in the fridge overnight and a very hot "
        "oven with steam for the first twenty minutes of baking."
    )
    run = run_dedup(DedupRequest(sources=[str(root)]), DedupOptions())
    pairs = {
        frozenset(run.detection.records[i].path.rsplit("/", 1)[1] for i in (p.a, p.b))
        for p in run.detection.pairs
    }
    assert pairs == {frozenset({"starter.md", "starter-copy.txt"})}


# -- a stale index: report only what the files on disk still support -------------------------


@pytest.fixture
def stale_index(tmp_path, fake_encoder):
    """The issue's case: two identical files indexed, then one overwritten with unique text."""
    root = tmp_path / "st"
    root.mkdir()
    text = "The same note about sourdough, flour and water, kept twice.\n"
    (root / "one.txt").write_text(text)
    (root / "two.txt").write_text(text)
    index = tmp_path / "idx"
    assert bienc("index", root, "--index", index, "-q").exit_code == 0
    (root / "two.txt").write_text("Something only this file says, about rockets and orbits.\n")
    return index, root


@pytest.mark.parametrize("fmt", ["table", "tsv", "csv", "ids", "json", "jsonl"])
def test_a_changed_file_is_never_reported_as_a_duplicate(stale_index, fmt):
    index, root = stale_index
    result = bienc("dedup", "--index", index, "-f", fmt)
    assert result.exit_code == ExitStatus.PARTIAL, result.output
    assert "warning: left out: " in result.stderr and "two.txt changed since it was indexed" in (
        result.stderr
    )
    assert f"bienc index --index {index}" in result.stderr  # how to fix it
    if fmt in ("json", "jsonl"):
        records = json.loads(result.stdout) if fmt == "json" else [
            json.loads(line) for line in result.stdout.splitlines()
        ]  # fmt: skip
        assert records == [
            {
                "group": None, "keeper": None, "members": [],
                "left_out": [{"doc_id": str(root / "two.txt"), "path": str(root / "two.txt"),
                              "row_id": None, "reason": "changed since it was indexed"}],
            }
        ]  # fmt: skip
    else:
        assert "two.txt" not in result.stdout and "one.txt" not in result.stdout


def test_a_changed_file_is_not_in_pairs_either(stale_index):
    index, _ = stale_index
    result = bienc("dedup", "--index", index, "--pairs", "-f", "jsonl")
    assert result.exit_code == ExitStatus.PARTIAL and result.stdout == ""
    assert "two.txt changed since it was indexed" in result.stderr


def test_delete_on_a_stale_index_deletes_nothing_and_says_so(stale_index, tmp_path, monkeypatch):
    index, root = stale_index
    monkeypatch.chdir(tmp_path)
    result = bienc("dedup", "--index", index, "--action", "delete", "--yes", "-f", "json")
    assert result.exit_code == ExitStatus.PARTIAL, result.output
    report = json.loads(result.stdout)
    assert report["counts"]["done"] == 0 and report["counts"]["skipped"] == 1
    [skipped] = report["files"]
    assert skipped["path"] == str(root / "two.txt")
    assert skipped["reason"] == "changed since it was indexed"
    assert sorted(p.name for p in root.iterdir()) == ["one.txt", "two.txt"]
    plan = bienc("dedup", "--index", index, "--plan", tmp_path / "plan.json")
    assert plan.exit_code == ExitStatus.PARTIAL
    left_out = json.loads((tmp_path / "plan.json").read_text())["left_out"]
    assert left_out == [{"path": str(root / "two.txt"), "reason": "changed since it was indexed"}]


def test_a_removed_file_is_left_out_and_a_touched_one_is_not(stale_index):
    index, root = stale_index
    (root / "two.txt").write_bytes((root / "one.txt").read_bytes())
    for n in (3, 4):  # indexed with the same text, then only touched
        (root / f"copy{n}.txt").write_text("Copies that stay copies, apart from their mtime.\n")
    assert bienc("index", root, "--index", index, "-q").exit_code == 0
    os.utime(root / "copy4.txt", ns=(10**18, 10**18))  # touched: the same text
    (root / "two.txt").unlink()
    result = bienc("dedup", "--index", index, "-f", "tsv")
    assert result.exit_code == ExitStatus.PARTIAL
    assert "two.txt is gone since it was indexed" in result.stderr
    assert [line.split("\t")[1] for line in result.stdout.splitlines()] == ["keep", "exact"]
    assert "copy4.txt" in result.stdout


def test_a_plan_judges_a_touched_file_as_the_report_does(stale_index, tmp_path):
    # The report keeps a file that was only touched (its text is unchanged); the plan must
    # too, not leave it out for its new mtime. A file really changed is left out of both,
    # and a plan that leaves something out exits 3, as the report does.
    index, root = stale_index
    for n in (3, 4):
        (root / f"copy{n}.txt").write_text("Copies that stay copies, apart from their mtime.\n")
    assert bienc("index", root, "--index", index, "-q").exit_code == 0
    os.utime(root / "copy4.txt", ns=(10**18, 10**18))
    plan = tmp_path / "touched.json"
    result = bienc("dedup", "--index", index, "--plan", plan, "-f", "json")
    planned = {m["path"] for g in json.loads(plan.read_text())["groups"] for m in g["members"]}
    assert any(p.endswith("copy4.txt") for p in planned), result.stderr
    assert "copy4.txt" not in result.stderr
    (root / "copy4.txt").write_text("Now unique text.\n")
    changed = tmp_path / "changed.json"
    result = bienc("dedup", "--index", index, "--plan", changed, "-f", "json")
    assert result.exit_code == ExitStatus.PARTIAL
    assert "copy4.txt" not in changed.read_text().split('"left_out"')[0]


def test_the_copies_of_a_changed_keeper_still_form_a_group(dup_folder, fake_encoder, tmp_path):
    """The keeper (first by path) changed: its exact copy now keeps, and the near copy found
    against the keeper's text still joins it."""
    index = tmp_path / "idx"
    assert bienc("index", dup_folder, "--index", index, "-q").exit_code == 0
    (dup_folder / "archive" / "starter-copy.md").write_text("Now about something else.\n")
    run = run_dedup(DedupRequest(index=index), DedupOptions(threshold=0.9))
    records = run.detection.records
    [group] = run.detection.groups
    assert records[group.keeper].path.endswith("starter-reworded.txt")
    assert [records[m.index].path.rsplit("/", 1)[1] for m in group.members] == ["starter.md"]
    assert [records[i].path.rsplit("/", 1)[1] for i, _ in run.detection.stale] == [
        "starter-copy.md"
    ]
    assert {(records[p.a].path, records[p.b].path) for p in run.detection.pairs} == {
        (str(dup_folder / "starter-reworded.txt"), str(dup_folder / "starter.md"))
    }


def test_a_changed_table_row_is_left_out_and_the_others_stay(tmp_path, fake_encoder):
    table = tmp_path / "faq.csv"
    rows = ["q1,reset my password", "q2,reset my password", "q3,where is the invoice",
            "q4,where is the invoice"]  # fmt: skip
    table.write_text("id,text\n" + "\n".join(rows) + "\n")
    index = tmp_path / "idx"
    assert bienc("index", table, "--index", index, "--id-column", "id", "-q").exit_code == 0
    table.write_text("id,text\n" + "\n".join(rows).replace("q2,reset", "q2,forgot") + "\n")
    result = bienc("dedup", "--index", index, "-f", "ids")
    assert result.exit_code == ExitStatus.PARTIAL, result.output
    assert result.stdout == "q4\n"
    assert "faq.csv#q2 changed since it was indexed" in result.stderr
