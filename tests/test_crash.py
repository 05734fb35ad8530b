"""SIGKILL during `bienc index`: the index is always the previous or the next complete generation."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import pytest

from bienc_cli.indexing.info import index_info
from bienc_cli.query.search import QueryOptions, search
from bienc_cli.store import generations as store
from tests.conftest import REPO


def _write_corpus(folder, n, version):
    folder.mkdir(exist_ok=True)
    for old in folder.glob("doc*.txt"):
        if int(old.stem[3:]) >= n:
            old.unlink()  # runs of different sizes: documents come and go
    for i in range(n):
        (folder / f"doc{i:04d}.txt").write_text(
            f"version {version} of document {i}: " + "words " * 200
        )


def _run(root, source, stage=None):
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.kill_driver",
            str(root),
            str(source),
            *([stage] if stage else []),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _content(root):
    generation = store.open_index(root)
    table = generation.read_sidecar(columns=["doc_id", "text"])
    versions = {text.split()[1] for text in table["text"].to_pylist() if text.startswith("version")}
    return generation.manifest["generation"], table.num_rows, versions


def test_sigkill_at_random_moments_never_leaves_a_mix(tmp_path, fake_encoder):
    rng = random.Random(1234)
    source, root = tmp_path / "docs", tmp_path / "idx"
    _write_corpus(source, 150, 0)
    started = time.monotonic()
    first = _run(root, source)
    assert first.wait(120) == 0, first.stderr.read().decode()
    duration = time.monotonic() - started  # kill within a run of about this length
    sizes = {0: 150} | {trial: (40, 150, 400)[trial % 3] for trial in range(1, 24)}
    live, killed = 0, 0  # the version the index held after the previous trial
    for trial in range(1, 24):
        _write_corpus(source, sizes[trial], trial)
        process = _run(root, source)
        time.sleep(rng.uniform(0.1, 1.0) * duration)
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            killed += 1
        process.wait(60)
        generation, rows, versions = _content(root)
        assert len(versions) == 1, f"trial {trial}: a mix of versions {versions}"
        (version,) = versions
        # the previous complete generation, or this run's (a kill may land after publishing)
        assert int(version) in {live, trial}
        if process.returncode == 0:
            assert int(version) == trial
        live = int(version)
        assert rows == sizes[live]
        assert index_info(root, stale=False)["chunks"] == rows  # `bienc info` works
        hits = search(root, [f"version {version} of document 7"], QueryOptions(k=3))[0]
        assert hits and all(h.text.startswith(f"version {version} ") for h in hits)
    assert killed >= 10, f"only {killed} of 23 runs were interrupted"
    # the next complete run after all the kills gives what an uninterrupted run gives
    final = _run(root, source)
    assert final.wait(120) == 0
    assert _content(root)[2] == {"23"}
    leftovers = [p.name for p in root.iterdir() if p.name.startswith(".tmp")]
    assert leftovers == []
    fresh = tmp_path / "fresh"
    assert _run(fresh, source).wait(120) == 0
    assert _texts(root) == _texts(fresh)  # the same content as a run never interrupted


def _texts(root):
    table = store.open_index(root).read_sidecar(columns=["doc_id", "chunk", "text"])
    return sorted(zip(*(table[c].to_pylist() for c in ("doc_id", "chunk", "text"))))


def test_queries_during_indexing_always_see_a_complete_generation(tmp_path, fake_encoder):
    source, root = tmp_path / "docs", tmp_path / "idx"
    _write_corpus(source, 150, 0)
    assert _run(root, source).wait(120) == 0
    queries = 0
    for version in (1, 2, 3):
        _write_corpus(source, 150, version)
        writer = _run(root, source)
        while writer.poll() is None or queries == 0:
            hits = search(root, ["document 3 words words"], QueryOptions(k=5))[0]
            versions = {h.text.split()[1] for h in hits}
            assert len(hits) == 5 and len(versions) == 1, versions  # never a mix
            queries += 1
        assert writer.returncode == 0
        assert _content(root)[2] == {str(version)}
    assert queries >= 3


@pytest.mark.parametrize(
    ("stage", "published"),
    [
        ("cache", False),
        ("vectors", False),
        ("sidecar", False),
        ("lookup", False),
        ("manifest", False),
        ("renamed", False),
        ("published", True),
    ],
)
def test_death_at_each_stage_of_a_write(tmp_path, fake_encoder, stage, published):
    """Dies (as abruptly as SIGKILL) inside the HNSW save, the Parquet write, and so on."""
    from bienc_cli.indexing.verify import verify_index

    source, root = tmp_path / "docs", tmp_path / "idx"
    _write_corpus(source, 60, 0)
    assert _run(root, source).wait(120) == 0
    _write_corpus(source, 60, 1)
    dying = _run(root, source, stage)
    assert dying.wait(120) == 137, dying.stderr.read().decode()
    generation, rows, versions = _content(root)
    assert versions == ({"1"} if published else {"0"}) and rows == 60
    assert verify_index(root).ok
    hits = search(root, ["version 1 of document 7"], QueryOptions(k=1))[0]
    assert hits
    resumed = _run(root, source)
    assert resumed.wait(120) == 0
    assert _content(root)[2] == {"1"}
    assert verify_index(root).ok
    leftovers = [p.name for p in root.iterdir() if p.name.startswith(".")]
    assert leftovers == []
