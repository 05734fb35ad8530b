"""Reading a sentence-transformers model folder: what it computes, and its fingerprints.

The one reader of a model folder's JSON files (``modules.json``, the Transformer's
``sentence_bert_config.json`` and ``config.json``, the Pooling and Normalize configs), used
by both encoders: ``model.describe_model`` (what an index records, and what the
sentence-transformers backend loads) and ``export.exportable`` (what the ONNX export
rebuilds in numpy). No weights are read and nothing heavy is imported.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bienc_cli.util.text import one_line

# sentence-transformers' Pooling modes (``Pooling.POOLING_MODES``).
POOLING_MODES = ("cls", "max", "mean", "mean_sqrt_len_tokens", "weightedmean", "lasttoken")
# The boolean keys of Pooling configs written before the ``pooling_mode`` key, in the order
# sentence-transformers concatenates the modes they switch on.
_LEGACY_POOLING_KEYS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}
# Where sentence-transformers looks for the Transformer module's settings, in its order.
_SBERT_CONFIG_FILES = (
    "sentence_bert_config.json",
    "sentence_roberta_config.json",
    "sentence_distilbert_config.json",
    "sentence_camembert_config.json",
    "sentence_albert_config.json",
    "sentence_xlm-roberta_config.json",
    "sentence_xlnet_config.json",
)


class ModelFolderError(Exception):
    """A file of the model folder is unreadable or not valid JSON; ``str()`` is one line."""


@dataclass(frozen=True, slots=True)
class Module:
    """One entry of ``modules.json``: the class name (``Pooling``) and its folder."""

    kind: str
    path: str


@dataclass(frozen=True, slots=True)
class ModelFolder:
    """What a sentence-transformers folder computes, as its JSON files say.

    A folder without ``modules.json`` (a bare Hugging Face model) reads as sentence-transformers
    loads one: the transformer in the folder itself, mean pooling, no Normalize.
    """

    path: str
    modules: tuple[Module, ...] | None  # in pipeline order; None without modules.json
    transformer_dir: str
    config: dict[str, Any] | None  # the transformer's config.json
    sbert: dict[str, Any]  # the Transformer module's settings (max_seq_length, do_lower_case)
    pooling_config: dict[str, Any] | None  # None: no Pooling module, or no config for it
    normalize_input: str | None  # the output a Normalize module normalises; None: no Normalize
    default_prompt_name: str | None  # from config_sentence_transformers.json

    @property
    def kinds(self) -> list[str]:
        return [m.kind for m in self.modules or ()]

    @property
    def pooling(self) -> tuple[str, ...]:
        """The pooling modes, concatenated in this order (almost always exactly one)."""
        return pooling_modes(self.pooling_config or {})

    @property
    def normalize(self) -> bool:
        return self.normalize_input is not None

    @property
    def dim(self) -> int | None:
        """The token embeddings' width, from the Pooling config, else the transformer's."""
        pooling = self.pooling_config or {}
        # sentence-transformers renamed word_embedding_dimension to embedding_dimension.
        dim = pooling.get("embedding_dimension") or pooling.get("word_embedding_dimension")
        return dim or (self.config or {}).get("hidden_size")

    @property
    def max_seq_length(self) -> int | None:
        """The Transformer module's truncation length, if its settings give one."""
        return self.sbert.get("max_seq_length")


def pooling_modes(config: dict[str, Any]) -> tuple[str, ...]:
    """The modes a Pooling ``config.json`` switches on, as sentence-transformers reads it.

    Its ``pooling_mode`` key (a name or a list of names) wins; without it, the legacy
    ``pooling_mode_*_tokens`` booleans; with neither, mean. Unknown names are returned as
    they are, for the caller to refuse.
    """
    mode = config.get("pooling_mode")
    if mode is not None:
        return (mode,) if isinstance(mode, str) else tuple(mode)
    return tuple(m for key, m in _LEGACY_POOLING_KEYS.items() if config.get(key)) or ("mean",)


def read_model_folder(path: str | Path) -> ModelFolder:
    """Read the folder's JSON files. Raises ModelFolderError for a file it cannot parse."""
    folder = os.path.abspath(os.path.expanduser(str(path)))
    modules = _modules(folder)
    transformer = next((m for m in modules or () if m.kind == "Transformer"), None)
    transformer_dir = os.path.join(folder, transformer.path if transformer else "")
    sbert = next(
        (
            _json(os.path.join(transformer_dir, name))
            for name in _SBERT_CONFIG_FILES
            if os.path.isfile(os.path.join(transformer_dir, name))
        ),
        {},
    )
    pooling = next((m for m in modules or () if m.kind == "Pooling"), None)
    normalize = next((m for m in modules or () if m.kind == "Normalize"), None)
    normalize_input = None
    if normalize is not None:
        settings = _optional_json(os.path.join(folder, normalize.path, "config.json")) or {}
        normalize_input = settings.get("module_input_name", "sentence_embedding")
    st_config = _optional_json(os.path.join(folder, "config_sentence_transformers.json")) or {}
    return ModelFolder(
        path=folder,
        modules=modules,
        transformer_dir=transformer_dir,
        config=_optional_json(os.path.join(transformer_dir, "config.json")),
        sbert=sbert,
        pooling_config=(
            _optional_json(os.path.join(folder, pooling.path, "config.json")) if pooling else None
        ),
        normalize_input=normalize_input,
        default_prompt_name=st_config.get("default_prompt_name"),
    )


def _modules(folder: str) -> tuple[Module, ...] | None:
    entries = _optional_json(os.path.join(folder, "modules.json"))
    if entries is None:
        return None
    try:
        ordered = sorted(entries, key=lambda m: m.get("idx", 0))
        # "sentence_transformers.models.Pooling" and the v5+ paths both end in the class name.
        return tuple(Module(m["type"].rsplit(".", 1)[-1], m.get("path", "")) for m in ordered)
    except (KeyError, TypeError, AttributeError) as exc:
        where = os.path.join(folder, "modules.json")
        raise ModelFolderError(f"cannot read {where}: {type(exc).__name__}: {exc}") from exc


def _optional_json(path: str) -> Any:
    return _json(path) if os.path.isfile(path) else None


def _json(path: str) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as exc:
        raise ModelFolderError(f"cannot read {path}: {one_line(str(exc))}") from exc


# --------------------------------------------------------------------------------------------
# Fingerprints. Two, because they answer different questions and one of them is frozen.


def fingerprint(folder: str | Path) -> str:
    """The model's identity as an index records it: 16 hex digits that change when the
    weights or the configuration change.

    Configuration files are hashed whole; weight files by name and size only, so that
    fingerprinting a 400 MB model stays instant. Every index stores this value and refuses
    a model whose value differs, and the ONNX exports are kept in folders named by it, so
    the rule must not change: a new rule would make every existing index "built with
    another model".
    """
    folder = Path(folder)
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        if rel.startswith(".") or "/." in rel or rel.endswith(".md") or rel.startswith("onnx"):
            continue
        digest.update(rel.encode())
        if path.suffix in {".json", ".txt", ".model"} and path.stat().st_size < 5 * 2**20:
            digest.update(path.read_bytes())
        else:
            digest.update(str(path.stat().st_size).encode())
    return digest.hexdigest()[:16]


# Files of a model folder that do not change what it computes.
_SOURCE_SKIP = {"README.md", ".gitattributes"}
_SOURCE_SKIP_DIRS = {"onnx", "openvino", ".git", ".cache"}
_LARGE_FILE = 16 * 1024 * 1024
_SAMPLE = 1024 * 1024


def source_fingerprint(model_dir: str) -> str:
    """A full sha256 of the folder an ONNX export was made from, recorded in its metadata.

    Unlike ``fingerprint`` it reads the weights' bytes (every file up to 16 MiB whole, larger
    ones by size and their first and last MiB), so it tells apart two checkpoints of the same
    size, such as a model fine-tuned and saved over its original; it still costs milliseconds.
    It is provenance for people and tools reading ``bienc_onnx.json``; it cannot replace
    ``fingerprint``, whose value existing indexes record.
    """
    digest = hashlib.sha256()
    for root, dirs, files in os.walk(model_dir):
        dirs[:] = sorted(d for d in dirs if d not in _SOURCE_SKIP_DIRS)
        for name in sorted(files):
            if name in _SOURCE_SKIP or name.startswith("."):
                continue
            path = os.path.join(root, name)
            size = os.path.getsize(path)
            digest.update(f"{os.path.relpath(path, model_dir)}\0{size}\0".encode())
            with open(path, "rb") as f:
                if size <= _LARGE_FILE:
                    digest.update(f.read())
                else:
                    digest.update(f.read(_SAMPLE))
                    f.seek(-_SAMPLE, os.SEEK_END)
                    digest.update(f.read(_SAMPLE))
    return digest.hexdigest()
