"""`bienc verify`: finds damage, and --repair brings the index back."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from bienc_cli import store
from bienc_cli.cli import app
from bienc_cli.errors import ExitStatus

runner = CliRunner()


def bienc(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def _index(root, corpus):
    assert bienc("index", corpus, "--index", root, "-q").exit_code == 0


def test_healthy_index_verifies(tmp_path, corpus, fake_encoder):
    root = tmp_path / "idx"
    _index(root, corpus)
    result = bienc("verify", "--index", root, "--json")
    data = json.loads(result.stdout)
    assert result.exit_code == 0 and data["ok"]
    names = {c["name"] for c in data["checks"]}
    assert {"manifest", "labels unique", "labels in graph", "counts", "lookup", "model"} <= names


def test_flipped_byte_is_found_and_repaired(tmp_path, corpus, fake_encoder):
    root = tmp_path / "idx"
    _index(root, corpus)
    (corpus / "extra.txt").write_text("An extra document about lighthouses and the sea.")
    _index(root, corpus)  # generation 2; generation 1 is kept
    live = store.open_index(root).dir
    data = bytearray((live / store.VECTORS).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (live / store.VECTORS).write_bytes(bytes(data))
    result = bienc("verify", "--index", root)
    assert result.exit_code == ExitStatus.NO_INDEX
    assert "FAIL file vectors.hnsw: sha256 does not match" in result.stdout
    repaired = bienc("verify", "--index", root, "--repair")
    assert repaired.exit_code == 0, repaired.stdout
    assert "went back to g000001" in repaired.stdout
    docs = set(store.open_index(root).read_sidecar(columns=["doc_id"])["doc_id"].to_pylist())
    assert str(corpus / "extra.txt") in docs  # re-indexed from the sources after going back


def test_missing_current_is_repaired(tmp_path, corpus, fake_encoder):
    root = tmp_path / "idx"
    _index(root, corpus)
    (root / store.CURRENT).unlink()
    assert bienc("verify", "--index", root).exit_code == ExitStatus.NO_INDEX
    assert bienc("query", "cats", "--index", root).exit_code == ExitStatus.NO_INDEX
    assert bienc("verify", "--index", root, "--repair").exit_code == 0
    assert bienc("query", "cats", "--index", root).exit_code == 0


def test_every_generation_damaged_rebuilds_from_sources(tmp_path, corpus, fake_encoder):
    root = tmp_path / "idx"
    _index(root, corpus)
    live = store.open_index(root).dir
    (live / store.SIDECAR).write_bytes(b"not parquet")
    result = bienc("verify", "--index", root, "--repair", "--json")
    data = json.loads(result.stdout)
    assert (
        result.exit_code == 0
        and data["ok"]
        and data["repaired"].startswith("rebuilt from the sources")
    )
    assert store.open_index(root).manifest["counts"]["documents"] == 4


def test_verify_without_index(tmp_path):
    assert bienc("verify", "--index", tmp_path / "none").exit_code == ExitStatus.NO_INDEX
