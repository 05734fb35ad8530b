"""Quantising an ONNX export to int8, for a smaller model and faster CPU encoding.

The int8 vectors differ a little from fp32 ones, so ``ModelInfo.vector_space`` keeps them
apart; ``quantize_export`` refuses a model whose int8 copy strays too far.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import warnings

import numpy as np

from bienc_cli.encoding.export import CHECK_TEXTS, ExportError, first_line
from bienc_cli.encoding.onnx_folder import (
    DATA_FILE,
    MODEL_FILE,
    TOKENIZER_FILE,
    make_shareable,
    staged,
    write_metadata,
)
from bienc_cli.encoding.runtime import OnnxEncoder

# Sentences for the int8 check: quantisation must keep every one close to its fp32 vector.
_QUANTIZE_CHECK_TEXTS = (
    *CHECK_TEXTS,
    "A woman is slicing an onion.",
    "The committee postponed its decision on the new budget until next spring.",
    "Mitochondrial dysfunction is associated with insulin resistance in skeletal muscle.",
    "def parse(path): return json.loads(open(path).read())",
)
# Smallest cosine between a check sentence's int8 and fp32 vectors that quantisation accepts.
# all-MiniLM-L6-v2 gives 0.96-0.99 on these; a model that quantises badly gives far less.
_QUANTIZE_MIN_COSINE = 0.95


def quantize_export(fp32_dir: str, out_dir: str) -> dict:
    """Write an int8 copy of the fp32 export in ``fp32_dir`` to ``out_dir`` (atomically).

    Dynamic quantisation as onnxruntime does it: MatMul and Attention weights become int8,
    per output channel and in a 7-bit range (``reduce_range``, which keeps the AVX2 kernels
    from saturating on CPUs without VNNI); activations are quantised to uint8 per tensor at
    run time, so a text's vector also depends slightly on the other texts of its batch.
    Checked against the fp32 export before it is kept. Returns the metadata written.
    Raises ExportError.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    fp32 = OnnxEncoder(fp32_dir)
    with staged(out_dir) as tmp:
        import onnx

        model_path = os.path.join(tmp, MODEL_FILE)
        try:
            with warnings.catch_warnings(), _no_logging():
                warnings.simplefilter("ignore")  # and its advice to pre-process: not for BERT
                quantize_dynamic(
                    os.path.join(fp32_dir, MODEL_FILE),
                    model_path,
                    op_types_to_quantize=["MatMul", "Attention"],
                    per_channel=True,
                    reduce_range=True,
                    weight_type=QuantType.QInt8,
                    use_external_data_format=True,
                    # the fused graph's contrib ops defeat shape inference; tensors are float
                    extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
                )
        except Exception as exc:  # the quantiser raises many kinds
            raise ExportError(f"int8 quantisation failed: {first_line(exc)}") from exc
        if not os.path.isfile(os.path.join(tmp, DATA_FILE)):  # small graphs stay inline
            open(os.path.join(tmp, DATA_FILE), "wb").close()
        make_shareable(os.path.join(tmp, DATA_FILE))
        shutil.copy(os.path.join(fp32_dir, TOKENIZER_FILE), os.path.join(tmp, TOKENIZER_FILE))
        metadata = dict(fp32.metadata)
        metadata.update(
            {
                "graph_optimization_level": "basic",
                "quantization": {
                    "method": "dynamic",
                    "weights": "int8, per channel, 7-bit range",
                    "activations": "uint8, per tensor, computed per batch",
                },
            }
        )
        write_metadata(tmp, metadata)
        texts = list(_QUANTIZE_CHECK_TEXTS)
        got = OnnxEncoder(tmp).encode(texts)
        want = fp32.encode(texts)
        cosines = (got * want).sum(axis=1) / (
            np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1)
        )
        lowest = float(cosines.min())
        if not lowest >= _QUANTIZE_MIN_COSINE:
            raise ExportError(
                f"the int8 model is too far from fp32 (cosine {lowest:.3f} on a check sentence, "
                f"below {_QUANTIZE_MIN_COSINE}); use the onnx backend"
            )
        metadata["quantization"]["min_check_cosine"] = round(lowest, 5)
        write_metadata(tmp, metadata)
    return metadata


@contextlib.contextmanager
def _no_logging():
    """Silence logging (onnxruntime's quantiser writes warnings to the root logger)."""
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)
