"""The reference encoder: sentence-transformers (torch) on the CPU.

Importing sentence-transformers costs seconds, so it happens inside the class, only when an
index is built on this backend (or the ONNX export fails and ``auto`` falls back to it).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from bienc_cli.encoding.model import ModelInfo
from bienc_cli.errors import ModelUnavailable

if TYPE_CHECKING:
    import numpy as np


def quiet_hugging_face() -> None:
    """Keep transformers' and the Hub's progress bars and notices off the user's stderr."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        import transformers
    except ImportError:
        return
    transformers.logging.disable_progress_bar()  # "Loading weights" ignores the variables


class SentenceTransformerEncoder:
    """The reference backend: sentence-transformers on the CPU."""

    def __init__(self, model: ModelInfo, *, threads: int | None = None):
        quiet_hugging_face()
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
        self,
        texts: Sequence[str],
        *,
        batch_size: int = 32,
        progress: Callable[[int], None] | None = None,
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
