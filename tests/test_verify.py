"""`bienc verify`: finds damage, and --repair brings the index back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bienc_cli.cli.main import app
from bienc_cli.encoding.onnx_folder import is_onnx_export
from bienc_cli.errors import ExitStatus
from bienc_cli.store import generations as store
from bienc_cli.store import layout

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
    data = bytearray((live / layout.VECTORS).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (live / layout.VECTORS).write_bytes(bytes(data))
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
    (root / layout.CURRENT).unlink()
    assert bienc("verify", "--index", root).exit_code == ExitStatus.NO_INDEX
    assert bienc("query", "cats", "--index", root).exit_code == ExitStatus.NO_INDEX
    assert bienc("verify", "--index", root, "--repair").exit_code == 0
    assert bienc("query", "cats", "--index", root).exit_code == 0


def test_every_generation_damaged_rebuilds_from_sources(tmp_path, corpus, fake_encoder):
    root = tmp_path / "idx"
    _index(root, corpus)
    live = store.open_index(root).dir
    (live / layout.SIDECAR).write_bytes(b"not parquet")
    result = bienc("verify", "--index", root, "--repair", "--json")
    data = json.loads(result.stdout)
    assert (
        result.exit_code == 0
        and data["ok"]
        and data["repaired"].startswith("rebuilt from the sources")
    )
    assert store.open_index(root).manifest["counts"]["documents"] == 4


@pytest.mark.parametrize("damage", ["graph", "manifest counts"])
def test_repair_reports_the_documents_the_rebuilt_index_holds(
    tmp_path, corpus, fake_encoder, damage
):
    # A rebuild counts against the index it replaces, so "added" is 0 here: the report must
    # name what the index holds, not what was new.
    root = tmp_path / "idx"
    _index(root, corpus)
    live = store.open_index(root).dir
    if damage == "graph":
        with open(live / store.VECTORS, "r+b") as fh:
            fh.truncate(100)
    else:
        manifest = json.loads((live / store.MANIFEST).read_text())
        manifest["counts"]["chunks"] += 1
        (live / store.MANIFEST).write_text(json.dumps(manifest))
    result = bienc("verify", "--index", root, "--repair", "--json")
    repaired = json.loads(result.stdout)["repaired"]
    assert result.exit_code == 0 and repaired == "rebuilt from the sources (4 documents)"


def test_verify_without_index(tmp_path):
    assert bienc("verify", "--index", tmp_path / "none").exit_code == ExitStatus.NO_INDEX


def _say_queries_use(root, backend):
    """Edit the live manifest as an index whose model exported would have written it."""
    path = store.open_index(root).dir / layout.MANIFEST
    manifest = json.loads(path.read_text())
    manifest["model"]["backend"] = backend
    path.write_text(json.dumps(manifest))


def test_a_missing_onnx_export_fails_verify(tmp_path, corpus, fake_encoder):
    """Queries load the export the manifest names; verify must check it is there (#14 item 14)."""
    root = tmp_path / "idx"
    _index(root, corpus)
    _say_queries_use(root, "onnx")
    result = bienc("verify", "--index", root, "--json")
    data = json.loads(result.stdout)
    assert result.exit_code == ExitStatus.NO_INDEX and not data["ok"]
    failed = [c for c in data["checks"] if not c["ok"]]
    assert [c["name"] for c in failed] == ["onnx export"]
    assert "missing bienc_onnx.json, model.onnx" in failed[0]["detail"]
    assert bienc("query", "cats", "--index", root).exit_code == ExitStatus.MODEL_UNAVAILABLE


def test_repair_exports_the_model_again(tmp_path, corpus, fake_encoder, monkeypatch):
    root = tmp_path / "idx"
    _index(root, corpus)
    _say_queries_use(root, "onnx")
    exported = []

    def export(model):  # what export_model leaves, without torch
        exported.append(model)
        for name in ("bienc_onnx.json", "model.onnx", "model.onnx.data", "tokenizer.json"):
            Path(model.onnx_dir, name).parent.mkdir(parents=True, exist_ok=True)
            Path(model.onnx_dir, name).write_text("{}")

    def problem(folder, dim):
        return None if is_onnx_export(folder) else "missing"

    monkeypatch.setattr("bienc_cli.encoding.encoder.rebuild_export", export)
    monkeypatch.setattr("bienc_cli.encoding.encoder.export_problem", problem)
    result = bienc("verify", "--index", root, "--repair")
    assert result.exit_code == 0, result.stdout
    assert "exported the model to ONNX again" in result.stdout
    (model,) = exported
    assert model.backend == "onnx" and model.onnx_dir == str(
        layout.onnx_dir(root, store.open_index(root).manifest["model"]["fingerprint"], "onnx")
    )
