"""Exporting a sentence-transformers model to ONNX (seconds, once per model).

``export_model`` imports torch and transformers lazily, exports the transformer to
``model.onnx``, fuses it with onnxruntime's BERT optimiser, checks both graphs against torch,
and writes the tokenizer and a ``bienc_onnx.json`` that records how to pool and normalise,
atomically (see ``onnx_folder``). Pooling and Normalize are not exported: ``runtime`` does
them in numpy, so only pipelines it can rebuild are accepted (``exportable``).
"""

from __future__ import annotations

import inspect
import logging
import os
import warnings
from typing import Any

import numpy as np
from tokenizers import Tokenizer

from bienc_cli.encoding.model_folder import (
    POOLING_MODES,
    ModelFolder,
    ModelFolderError,
    read_model_folder,
    source_fingerprint,
)
from bienc_cli.encoding.onnx_folder import (
    DATA_FILE,
    FORMAT_VERSION,
    MODEL_FILE,
    TOKENIZER_FILE,
    make_shareable,
    staged,
    write_metadata,
)
from bienc_cli.encoding.runtime import pad, session

logger = logging.getLogger(__name__)

OPSET = 17  # LayerNormalization is a native op from 17 on; onnxruntime's fusions handle it

# Largest |difference| on real tokens between torch and onnxruntime that export accepts.
# Fused attention and GELU on CPU differ from torch by ~1e-5; a broken export by ~1.
_EXPORT_TOLERANCE = 1e-3


class ExportError(Exception):
    """The model cannot be exported to ONNX: unsupported pipeline, architecture or pooling, or the
    export itself failed. ``str()`` is one line."""


def first_line(exc: BaseException) -> str:
    """An exception as one line: its type and the first line of its message."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def exportable(model_dir: str) -> ModelFolder:
    """The model folder, read, if its pipeline is one the ONNX runtime can rebuild:
    Transformer -> Pooling (one mode) (-> Normalize), no default prompt. Raises ExportError.
    """
    try:
        folder = read_model_folder(model_dir)
    except ModelFolderError as exc:
        raise ExportError(str(exc)) from exc
    if folder.modules is None:
        raise ExportError(
            f"{model_dir} is not a sentence-transformers model folder (no modules.json)"
        )
    kinds = folder.kinds
    if kinds not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
        unsupported = [k for k in kinds if k not in ("Transformer", "Pooling", "Normalize")]
        detail = f"module {unsupported[0]}" if unsupported else "module order " + " -> ".join(kinds)
        raise ExportError(
            f"{model_dir}: unsupported {detail}; only Transformer -> Pooling (-> Normalize) "
            "pipelines can be exported to ONNX"
        )
    task = folder.sbert.get("transformer_task")
    if task not in (None, "feature-extraction"):
        raise ExportError(f"{model_dir}: unsupported transformer_task {task!r}")
    if folder.pooling_config is None:
        raise ExportError(f"{model_dir}: the Pooling module has no config.json")
    modes = folder.pooling
    if len(modes) != 1 or modes[0] not in POOLING_MODES:
        raise ExportError(
            f"{model_dir}: unsupported pooling {'+'.join(map(str, modes))}; "
            f"one of {', '.join(POOLING_MODES)} is needed"
        )
    if folder.normalize_input not in (None, "sentence_embedding"):
        raise ExportError(
            f"{model_dir}: Normalize over {folder.normalize_input!r} is not supported"
        )
    if folder.default_prompt_name:
        raise ExportError(f"{model_dir}: models with a default prompt are not supported")
    return folder


def _prepare_tokenizer(hf_tokenizer: Any, do_lower_case: bool, max_length: int) -> Tokenizer:
    """The tokenizer sentence-transformers would run: truncating at ``max_length``, no padding
    (the runtime pads per batch). Applies ``do_lower_case`` to ``hf_tokenizer`` too, in place."""
    from tokenizers import normalizers

    backend = hf_tokenizer.backend_tokenizer
    if do_lower_case:
        # Same rule as sentence-transformers' Transformer: prepend Lowercase unless present.
        current = backend.normalizer
        if isinstance(current, normalizers.Sequence):
            parts = list(current)
        else:
            parts = [current] if current is not None else []
        if not any(isinstance(part, normalizers.Lowercase) for part in parts):
            backend.normalizer = normalizers.Sequence([normalizers.Lowercase(), *parts])
    tokenizer = Tokenizer.from_str(backend.to_str())
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=max_length)
    return tokenizer


def _torch_export(wrapper: Any, example: tuple[Any, ...], names: list[str], path: str) -> str:
    """Export with the TorchScript exporter, falling back to the dynamo one; returns which."""
    import torch

    axes = {name: {0: "batch", 1: "sequence"} for name in [*names, "last_hidden_state"]}
    failures = []
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated and tracing warns about shapes; both are known.
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                wrapper,
                example,
                path,
                input_names=names,
                output_names=["last_hidden_state"],
                dynamic_axes=axes,
                opset_version=OPSET,
                do_constant_folding=True,
                dynamo=False,
            )
            return "torchscript"
        except Exception as exc:  # any exporter failure means: try the other one
            failures.append(f"torchscript: {first_line(exc)}")
            logger.info("TorchScript ONNX export failed, trying dynamo: %s", exc)
        try:
            batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
            shapes = tuple({0: batch, 1: sequence} for _ in names)
            program = torch.onnx.export(
                wrapper,
                example,
                input_names=names,
                output_names=["last_hidden_state"],
                dynamic_shapes=shapes,
                opset_version=OPSET,
                dynamo=True,
                verbose=False,
            )
            program.save(path)
            return "dynamo"
        except Exception as exc:
            failures.append(f"dynamo: {first_line(exc)}")
    raise ExportError("ONNX export failed (" + "; ".join(failures) + ")")


def _optimize(raw_path: str, out_path: str, config: Any) -> dict[str, int]:
    """Fuse attention, embedding and layer norms with onnxruntime's transformer optimiser."""
    from onnxruntime.transformers import optimizer

    model = optimizer.optimize_model(
        raw_path,
        model_type="bert",
        num_heads=config.num_attention_heads,
        hidden_size=config.hidden_size,
        opt_level=0,  # Python fusions only: the saved graph stays hardware-independent
        use_gpu=False,
    )
    _remove(out_path, out_path + ".data")
    # Weights in a side file: onnxruntime maps it instead of parsing a 90 MB protobuf, which
    # halves session creation (the cold-query path).
    model.save_model_to_file(out_path, use_external_data_format=True)
    stats = model.get_fused_operator_statistics()
    return {op: count for op, count in stats.items() if count}


def _save_with_external_data(raw_path: str, out_path: str) -> None:
    import onnx

    _remove(out_path, out_path + ".data")
    onnx.save_model(
        onnx.load(raw_path),
        out_path,
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=os.path.basename(out_path) + ".data",
    )


def _opset(path: str) -> int:
    """The default-domain opset the exporter actually wrote (dynamo may raise it)."""
    import onnx

    imports = onnx.load(path, load_external_data=False).opset_import
    return next(int(o.version) for o in imports if o.domain in ("", "ai.onnx"))


def _remove(*paths: str) -> None:
    for path in paths:
        if os.path.exists(path):
            os.remove(path)


# Texts each export is checked on against torch: short, tiny, and past max_seq_length.
CHECK_TEXTS = (
    "A man is playing a guitar.",
    "Hi",
    "The quick brown fox jumps over the lazy dog, again and again, until it is tired. " * 40,
)


def _max_difference(graph: Any, torch_model: Any, batch: dict[str, np.ndarray]) -> float:
    """Largest |torch - onnxruntime| on the real (unmasked) tokens of ``batch``; ``graph``
    is an onnxruntime session."""
    import torch

    names = {i.name for i in graph.get_inputs()}
    got = graph.run(None, {k: v for k, v in batch.items() if k in names})[0]
    with torch.no_grad():
        want = torch_model(**{k: torch.from_numpy(v) for k, v in batch.items()})
    want = want.last_hidden_state.numpy()
    real = batch["attention_mask"].astype(bool)
    return float(np.abs(got - want)[real].max())


def export_model(model_dir: str, out_dir: str, *, optimize: bool = True) -> dict:
    """Export a sentence-transformers model folder to an ONNX folder usable by OnnxEncoder.

    Writes ``model.onnx`` (graph) + ``model.onnx.data`` (weights), ``tokenizer.json`` and
    ``bienc_onnx.json`` into a temporary folder beside ``out_dir`` and moves it into place at
    the end, so a crash never leaves a half-written folder. With ``optimize`` the graph is fused
    by onnxruntime's transformer optimiser and saved fused, so sessions skip the expensive
    optimisation levels. Both graphs are checked against torch before one is kept. Returns the
    metadata written to ``bienc_onnx.json``. Raises ExportError.
    """
    model_dir = os.path.abspath(model_dir)
    out_dir = os.path.abspath(out_dir)
    pipeline = exportable(model_dir)
    transformer_dir = pipeline.transformer_dir

    import onnxruntime as ort
    import torch
    import transformers
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    try:
        config = AutoConfig.from_pretrained(transformer_dir)
    except Exception as exc:  # transformers raises many kinds
        raise ExportError(
            f"cannot read the transformer config in {transformer_dir}: {first_line(exc)}"
        ) from exc
    if getattr(config, "is_encoder_decoder", False) or getattr(config, "is_decoder", False):
        raise ExportError(f"{model_dir}: {config.model_type} is not an encoder-only model")
    if pipeline.dim not in (None, config.hidden_size):
        raise ExportError(
            f"{model_dir}: pooling dimension {pipeline.dim} differs from the transformer's "
            f"hidden size {config.hidden_size}"
        )
    try:
        hf_tokenizer = AutoTokenizer.from_pretrained(transformer_dir)
        # Eager attention: its graph is the one onnxruntime's attention fusion recognises.
        model = AutoModel.from_pretrained(transformer_dir, attn_implementation="eager")
    except Exception as exc:
        raise ExportError(
            f"cannot load the transformer in {transformer_dir}: {first_line(exc)}"
        ) from exc
    if not getattr(hf_tokenizer, "is_fast", False):
        raise ExportError(f"{model_dir}: the tokenizer has no fast (tokenizers) version")
    model.eval()

    max_seq_length = pipeline.max_seq_length
    if max_seq_length is None:  # as sentence-transformers: the tokenizer's, capped by the model's
        max_seq_length = min(
            hf_tokenizer.model_max_length, getattr(config, "max_position_embeddings", 1 << 30)
        )
    max_seq_length = int(max_seq_length)
    pad_id = hf_tokenizer.pad_token_id
    if pad_id is None:
        raise ExportError(f"{model_dir}: the tokenizer has no padding token")
    forward_params = inspect.signature(model.forward).parameters
    input_names = ["input_ids", "attention_mask"]
    if "token_type_ids" in forward_params and "token_type_ids" in hf_tokenizer.model_input_names:
        input_names.append("token_type_ids")

    class _LastHiddenState(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any = None) -> Any:
            extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
            return self.inner(
                input_ids=input_ids, attention_mask=attention_mask, **extra
            ).last_hidden_state

    # eval() matters: the exporter restores the wrapper's mode afterwards, recursively.
    wrapper = _LastHiddenState(model).eval()
    example_ids = torch.full((2, 8), pad_id, dtype=torch.long)
    example_ids[0, :] = 1000
    example_ids[1, :5] = 1000
    example_mask = (torch.arange(8)[None, :] < torch.tensor([[8], [5]])).long()
    example = {
        "input_ids": example_ids,
        "attention_mask": example_mask,
        "token_type_ids": torch.zeros_like(example_ids),
    }

    do_lower_case = bool(pipeline.sbert.get("do_lower_case", False))
    tokenizer = _prepare_tokenizer(hf_tokenizer, do_lower_case, max_seq_length)
    check_ids = [enc.ids for enc in tokenizer.encode_batch(CHECK_TEXTS)]
    check = pad(check_ids, pad_id, input_names)
    hf_ids = hf_tokenizer(list(CHECK_TEXTS), truncation="longest_first", max_length=max_seq_length)
    if [list(ids) for ids in hf_ids["input_ids"]] != check_ids:
        raise ExportError(
            f"{model_dir}: the tokenizers library tokenises differently from "
            "transformers for this model"
        )

    with staged(out_dir) as tmp:
        raw_path = os.path.join(tmp, "raw.onnx")
        model_path = os.path.join(tmp, MODEL_FILE)
        exporter = _torch_export(
            wrapper, tuple(example[n] for n in input_names), input_names, raw_path
        )
        opset = _opset(raw_path)
        raw_error = _max_difference(session(raw_path, "all"), model, check)
        if not raw_error <= _EXPORT_TOLERANCE:
            raise ExportError(f"{model_dir}: the ONNX export differs from torch by {raw_error:.3g}")
        fused: dict[str, int] = {}
        optimized = False
        error = raw_error
        if optimize:
            try:
                fused = _optimize(raw_path, model_path, config)
                error = _max_difference(session(model_path, "basic"), model, check)
                optimized = error <= _EXPORT_TOLERANCE
                if not optimized:
                    logger.warning(
                        "optimised graph differs from torch by %.3g; keeping the "
                        "unoptimised export",
                        error,
                    )
            except Exception as exc:  # an optimiser failure is not fatal
                logger.warning(
                    "onnxruntime optimiser failed, keeping the unoptimised export: %s",
                    first_line(exc),
                )
        if not optimized:
            _save_with_external_data(raw_path, model_path)
            error, fused = raw_error, {}
        os.remove(raw_path)
        make_shareable(os.path.join(tmp, DATA_FILE))
        tokenizer.save(os.path.join(tmp, TOKENIZER_FILE))
        metadata = {
            "format_version": FORMAT_VERSION,
            "pooling": pipeline.pooling[0],
            "normalize": pipeline.normalize,
            "max_seq_length": max_seq_length,
            "dim": int(config.hidden_size),
            "do_lower_case": do_lower_case,
            "pad_token_id": int(pad_id),
            "input_names": input_names,
            "weights_file": DATA_FILE,
            "model_type": config.model_type,
            "source": {"path": model_dir, "fingerprint": source_fingerprint(model_dir)},
            "opset": opset,
            "exporter": exporter,
            "optimized": optimized,
            # Sessions on an already-fused graph only need the cheap rewrites.
            "graph_optimization_level": "basic" if optimized else "all",
            "fused_operators": fused,
            "max_abs_difference": error,
            "onnxruntime_version": ort.__version__,
            "torch_version": torch.__version__,
            "transformers_version": transformers.__version__,
        }
        write_metadata(tmp, metadata)
    return metadata
