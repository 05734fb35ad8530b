"""The encoder boundary: texts in, L2-normalised float32 vectors out, on the chosen backend.

Everything outside ``encoding/`` sees the ``Encoder`` protocol and ``load_encoder``. The
backends: ``onnx`` (``runtime.OnnxEncoder`` on an export made once by ``export``), its int8
copy ``onnx-int8`` (``quantize``), and ``sentence-transformers`` (``torch_encoder``). Only
``encoding/`` imports torch, sentence-transformers, transformers, onnx and onnxruntime, each
inside the function that needs it, so that importing this module costs milliseconds.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from bienc_cli.encoding.model import ModelInfo
from bienc_cli.encoding.onnx_folder import OnnxFolderError, is_onnx_export, missing_files
from bienc_cli.encoding.torch_encoder import SentenceTransformerEncoder, quiet_hugging_face
from bienc_cli.errors import ModelUnavailable

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

Progress = Callable[[int], None]
BACKENDS = ("auto", "onnx", "onnx-int8", "sentence-transformers")


class Encoder(Protocol):
    """Turns texts into unit-length float32 vectors of shape (len(texts), dim)."""

    dim: int
    max_seq_length: int

    def encode(
        self, texts: Sequence[str], *, batch_size: int = 32, progress: Progress | None = None
    ) -> np.ndarray: ...


def export_problem(folder: str | Path, dim: int) -> str | None:
    """Why the ONNX export in ``folder`` cannot serve queries of ``dim``-d vectors, or None:
    a file missing or damaged, a graph onnxruntime cannot load, vectors of the wrong shape."""
    import numpy as np

    from bienc_cli.encoding.runtime import OnnxEncoder

    missing = missing_files(folder)
    if missing:
        return f"{folder}: missing {', '.join(missing)}"
    try:
        vector = OnnxEncoder(str(folder), threads=1).encode(["bienc verify"])
    except OnnxFolderError as exc:
        return str(exc)
    except Exception as exc:  # onnxruntime's own errors for a damaged graph or weights
        return f"{folder}: cannot run the export ({type(exc).__name__}: {str(exc)[:200]})"
    if vector.shape != (1, dim) or not np.isfinite(vector).all():
        return f"{folder}: gives vectors of shape {vector.shape}, the index holds {dim}-d ones"
    return None


def rebuild_export(model: ModelInfo) -> None:
    """Export ``model`` to ``model.onnx_dir`` again (its int8 copy too, for onnx-int8),
    replacing what is there; the old folder stays until the new one is complete."""
    from bienc_cli.encoding.export import ExportError, export_model
    from bienc_cli.encoding.quantize import quantize_export

    assert model.onnx_dir is not None and model.backend in ("onnx", "onnx-int8")
    fp32_dir = str(Path(model.onnx_dir).with_name(model.fingerprint))
    quiet_hugging_face()
    try:
        if model.backend == "onnx" or export_problem(fp32_dir, model.dim) is not None:
            export_model(model.path, fp32_dir)
        if model.backend == "onnx-int8":
            quantize_export(fp32_dir, model.onnx_dir)
    except ExportError as exc:
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
    from bienc_cli.encoding.export import ExportError
    from bienc_cli.encoding.runtime import OnnxEncoder

    fp32_dir = model.onnx_dir
    if model.backend == "onnx-int8":
        fp32_dir = str(Path(model.onnx_dir).with_name(model.fingerprint))
    try:
        if not is_onnx_export(model.onnx_dir):
            _export(model, fp32_dir)
        encoder = OnnxEncoder(
            model.onnx_dir, threads=model.threads, prepack_weights=model.threads != 1
        )
        encoder.backend = "onnx-int8" if model.backend == "onnx-int8" else "onnx"
        return encoder
    except (ExportError, OnnxFolderError) as exc:
        if model.backend != "auto":
            raise ModelUnavailable(
                f"cannot use the {model.backend} backend for {model.name}: {exc}"
            ) from exc
        log.warning("%s: cannot use ONNX (%s); using sentence-transformers", model.name, exc)
        return SentenceTransformerEncoder(model, threads=model.threads)


def _export(model: ModelInfo, fp32_dir: str) -> None:
    """Make the export ``model.onnx_dir`` lacks: the fp32 one in ``fp32_dir`` unless it is
    there, then, for onnx-int8, its int8 copy."""
    from bienc_cli.encoding.export import export_model
    from bienc_cli.encoding.quantize import quantize_export

    if not is_onnx_export(fp32_dir):
        quiet_hugging_face()
        export_model(model.path, fp32_dir)
    if model.backend == "onnx-int8":
        quantize_export(fp32_dir, model.onnx_dir)
