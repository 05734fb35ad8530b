"""The fast encoder: an ONNX export run by onnxruntime, with pooling in numpy.

Starts in well under a second and needs only numpy, ``tokenizers`` and onnxruntime, so a
query never pays for ``import sentence_transformers`` (~5 s) or torch. This and ``export``
(which checks its graphs) are the only modules that open onnxruntime sessions.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from tokenizers import Tokenizer

from bienc_cli.encoding.model_folder import POOLING_MODES
from bienc_cli.encoding.onnx_folder import (
    MODEL_FILE,
    TOKENIZER_FILE,
    OnnxFolderError,
    read_metadata,
)

_GRAPH_LEVELS = {
    "disable": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}


def session(path: str, level: str, threads: int | None = None, prepack: bool = True) -> Any:
    """An onnxruntime CPU session on the graph at ``path``, at graph optimisation ``level``."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if not prepack:
        # Prepacking MatMul weights is most of session creation (~70-80 ms here) and buys ~5%
        # on large batches: worth skipping for a one-off query.
        options.add_session_config_entry("session.disable_prepacking", "1")
    if level not in _GRAPH_LEVELS:
        raise ValueError(f"graph optimisation level {level!r}: one of {', '.join(_GRAPH_LEVELS)}")
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _GRAPH_LEVELS[level])
    options.intra_op_num_threads = threads or os.cpu_count() or 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def pad(
    token_ids: list[list[int]], pad_id: int, input_names: Sequence[str]
) -> dict[str, np.ndarray]:
    """Right-pad to the longest sequence; the feeds the graph takes."""
    width = max(map(len, token_ids))
    ids = np.full((len(token_ids), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(token_ids), width), dtype=np.int64)
    for row, seq in enumerate(token_ids):
        ids[row, : len(seq)] = seq
        mask[row, : len(seq)] = 1
    feeds = {"input_ids": ids, "attention_mask": mask}
    if "token_type_ids" in input_names:  # one segment: all zeros, as the tokenizer gives
        feeds["token_type_ids"] = np.zeros_like(ids)
    return feeds


def pool(hidden: np.ndarray, mask: np.ndarray, pooling: str, normalize: bool) -> np.ndarray:
    """sentence-transformers' Pooling (+ Normalize) on right-padded token embeddings."""
    maskf = mask.astype(np.float32)
    counts = maskf.sum(axis=1, keepdims=True)
    if pooling in ("mean", "mean_sqrt_len_tokens"):
        summed = np.matmul(maskf[:, None, :], hidden)[:, 0, :]
        denominator = np.maximum(counts, 1e-9)
        if pooling == "mean_sqrt_len_tokens":
            denominator = np.sqrt(denominator)
        pooled = summed / denominator
    elif pooling == "cls":
        pooled = hidden[:, 0, :]
    elif pooling == "max":
        pooled = np.where(mask[:, :, None] > 0, hidden, -np.inf).max(axis=1)
    elif pooling == "weightedmean":
        weights = maskf * np.arange(1, mask.shape[1] + 1, dtype=np.float32)
        summed = np.matmul(weights[:, None, :], hidden)[:, 0, :]
        pooled = summed / np.maximum(weights.sum(axis=1, keepdims=True), 1e-9)
    elif pooling == "lasttoken":
        last = np.maximum(mask.sum(axis=1) - 1, 0)
        pooled = hidden[np.arange(len(hidden)), last]
    else:
        raise ValueError(f"unknown pooling {pooling!r}")
    pooled = pooled.astype(np.float32, copy=False)
    if normalize:  # torch.nn.functional.normalize: x / max(||x||, 1e-12)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        pooled = pooled / np.maximum(norms, 1e-12)
    return pooled


class OnnxEncoder:
    """Encode texts with an exported model: tokenizers + onnxruntime + numpy pooling.

    ``threads``: onnxruntime intra-op threads (default: ``os.cpu_count()``). ``graph_optimization_level``
    ("disable", "basic", "extended", "all") overrides the level the export recorded.
    ``prepack_weights=False`` starts ~70-80 ms faster but runs large batches ~5% slower: for a
    process that encodes one query and exits (it brings a cold query under 0.25 s here).
    """

    def __init__(
        self,
        onnx_dir: str,
        *,
        threads: int | None = None,
        graph_optimization_level: str | None = None,
        prepack_weights: bool = True,
    ) -> None:
        meta = read_metadata(onnx_dir)
        self.metadata: dict[str, Any] = meta
        self.dim: int = int(meta["dim"])
        self.max_seq_length: int = int(meta["max_seq_length"])
        self.pooling: str = meta["pooling"]
        self.normalize: bool = bool(meta["normalize"])
        if self.pooling not in POOLING_MODES:
            raise OnnxFolderError(f"{onnx_dir}: unknown pooling {self.pooling!r}; export again")
        self._pad_id = int(meta["pad_token_id"])
        self._tokenizer = Tokenizer.from_file(os.path.join(onnx_dir, TOKENIZER_FILE))
        # Padding is done per batch in pad(), after sorting by length.
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(max_length=self.max_seq_length)
        level = graph_optimization_level or meta.get("graph_optimization_level", "all")
        self._session = session(os.path.join(onnx_dir, MODEL_FILE), level, threads, prepack_weights)
        self._input_names = [i.name for i in self._session.get_inputs()]
        self._output_name = self._session.get_outputs()[0].name

    def encode(
        self,
        texts: Sequence[str],
        *,
        batch_size: int = 32,
        progress: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        """float32 vectors of shape (len(texts), dim), in the order of ``texts``.

        Texts are tokenised at once (keep calls to a few thousand texts: the token ids are held
        in memory), then run longest first in batches of ``batch_size`` so that each batch
        carries little padding. ``progress(n)`` is called after each batch of n texts.
        """
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        if not len(texts):
            return out
        token_ids = [enc.ids for enc in self._tokenizer.encode_batch(list(texts))]
        lengths = np.fromiter(map(len, token_ids), dtype=np.int64, count=len(token_ids))
        order = np.argsort(-lengths, kind="stable")
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            feeds = pad([token_ids[i] for i in rows], self._pad_id, self._input_names)
            hidden = self._session.run([self._output_name], feeds)[0]
            out[rows] = pool(hidden, feeds["attention_mask"], self.pooling, self.normalize)
            if progress is not None:
                progress(len(rows))
        return out
