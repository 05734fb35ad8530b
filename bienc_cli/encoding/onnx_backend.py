"""The fast encoder backend: a sentence-transformers model exported to ONNX, run by onnxruntime.

Two halves with very different costs:

* ``export_model`` (seconds, once per model) imports torch and transformers lazily, exports the
  transformer to ``model.onnx``, fuses it with onnxruntime's BERT optimiser, and writes the
  tokenizer and a ``bienc_onnx.json`` that records how to pool and normalise.
* ``OnnxEncoder`` (well under a second to start) needs only numpy, ``tokenizers`` and
  onnxruntime, so a query never pays for ``import sentence_transformers`` (~5 s) or torch.

This is the only module that imports onnxruntime.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
from tokenizers import Tokenizer

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
METADATA_FILE = "bienc_onnx.json"
MODEL_FILE = "model.onnx"
DATA_FILE = MODEL_FILE + ".data"  # the weights, as ONNX external data
TOKENIZER_FILE = "tokenizer.json"
OPSET = 17  # LayerNormalization is a native op from 17 on; onnxruntime's fusions handle it

POOLING_MODES = ("mean", "cls", "max", "mean_sqrt_len_tokens", "weightedmean", "lasttoken")
# Legacy 1_Pooling/config.json booleans, in sentence-transformers' concatenation order.
_LEGACY_POOLING_KEYS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}
_SBERT_CONFIG_FILES = (
    "sentence_bert_config.json",
    "sentence_roberta_config.json",
    "sentence_distilbert_config.json",
    "sentence_camembert_config.json",
    "sentence_albert_config.json",
    "sentence_xlm-roberta_config.json",
    "sentence_xlnet_config.json",
)
# Files of a model folder that do not change what it computes.
_FINGERPRINT_SKIP = {"README.md", ".gitattributes"}
_FINGERPRINT_SKIP_DIRS = {"onnx", "openvino", ".git", ".cache"}
_LARGE_FILE = 16 * 1024 * 1024
_SAMPLE = 1024 * 1024

# Largest |difference| on real tokens between torch and onnxruntime that export accepts.
# Fused attention and GELU on CPU differ from torch by ~1e-5; a broken export by ~1.
_EXPORT_TOLERANCE = 1e-3


class ExportError(Exception):
    """The model cannot be exported to ONNX: unsupported pipeline, architecture or pooling, or the
    export itself failed. ``str()`` is one line."""


class OnnxFolderError(Exception):
    """An ONNX folder is missing a file or was written by another format version; export again."""


# --------------------------------------------------------------------------------------------
# Reading a sentence-transformers folder


def _read_json(path: str) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _module_kind(module_type: str) -> str:
    # "sentence_transformers.models.Pooling" and the v5+ paths both end in the class name.
    return module_type.rsplit(".", 1)[-1]


def _read_pipeline(model_dir: str) -> dict[str, Any]:
    """What the sentence-transformers folder computes, read from its JSON files."""
    modules_path = os.path.join(model_dir, "modules.json")
    if not os.path.isfile(modules_path):
        raise ExportError(
            f"{model_dir} is not a sentence-transformers model folder (no modules.json)"
        )
    try:
        modules = sorted(_read_json(modules_path), key=lambda m: m.get("idx", 0))
        kinds = [_module_kind(m["type"]) for m in modules]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ExportError(f"cannot read {modules_path}: {_first_line(exc)}") from exc
    if kinds not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
        unsupported = [k for k in kinds if k not in ("Transformer", "Pooling", "Normalize")]
        detail = f"module {unsupported[0]}" if unsupported else "module order " + " -> ".join(kinds)
        raise ExportError(
            f"{model_dir}: unsupported {detail}; only Transformer -> Pooling (-> Normalize) "
            "pipelines can be exported to ONNX"
        )
    transformer_dir = os.path.join(model_dir, modules[0].get("path", ""))
    pooling_dir = os.path.join(model_dir, modules[1].get("path", ""))

    sbert: dict[str, Any] = {}
    for name in _SBERT_CONFIG_FILES:
        candidate = os.path.join(transformer_dir, name)
        if os.path.isfile(candidate):
            sbert = _read_json(candidate)
            break
    task = sbert.get("transformer_task")
    if task not in (None, "feature-extraction"):
        raise ExportError(f"{model_dir}: unsupported transformer_task {task!r}")

    pooling_path = os.path.join(pooling_dir, "config.json")
    if not os.path.isfile(pooling_path):
        raise ExportError(f"{model_dir}: the Pooling module has no config.json")
    pooling_cfg = _read_json(pooling_path)
    mode = pooling_cfg.get("pooling_mode")
    if mode is None:
        modes = [m for key, m in _LEGACY_POOLING_KEYS.items() if pooling_cfg.get(key)] or ["mean"]
    else:
        modes = [mode] if isinstance(mode, str) else list(mode)
    if len(modes) != 1 or modes[0] not in POOLING_MODES:
        raise ExportError(
            f"{model_dir}: unsupported pooling {'+'.join(map(str, modes))}; "
            f"one of {', '.join(POOLING_MODES)} is needed"
        )
    dim = pooling_cfg.get("embedding_dimension", pooling_cfg.get("word_embedding_dimension"))

    if len(modules) == 3:
        normalize_cfg_path = os.path.join(model_dir, modules[2].get("path", ""), "config.json")
        if os.path.isfile(normalize_cfg_path):
            key = _read_json(normalize_cfg_path).get("module_input_name", "sentence_embedding")
            if key != "sentence_embedding":
                raise ExportError(f"{model_dir}: Normalize over {key!r} is not supported")

    st_cfg_path = os.path.join(model_dir, "config_sentence_transformers.json")
    if os.path.isfile(st_cfg_path) and _read_json(st_cfg_path).get("default_prompt_name"):
        raise ExportError(f"{model_dir}: models with a default prompt are not supported")

    return {
        "transformer_dir": transformer_dir,
        "pooling": modes[0],
        "normalize": len(modules) == 3,
        "max_seq_length": sbert.get("max_seq_length"),
        "do_lower_case": bool(sbert.get("do_lower_case", False)),
        "dim": dim,
    }


def source_fingerprint(model_dir: str) -> str:
    """A cheap sha256 that changes when the model folder's contents change.

    Small files are hashed whole; for weight files (> 16 MiB) only the size and the first and last
    MiB are, so that checking whether an export is stale costs milliseconds, not a full read.
    """
    digest = hashlib.sha256()
    for root, dirs, files in os.walk(model_dir):
        dirs[:] = sorted(d for d in dirs if d not in _FINGERPRINT_SKIP_DIRS)
        for name in sorted(files):
            if name in _FINGERPRINT_SKIP or name.startswith("."):
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


# --------------------------------------------------------------------------------------------
# Export


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def _prepare_tokenizer(hf_tokenizer: Any, do_lower_case: bool, max_length: int) -> Tokenizer:
    """The tokenizer sentence-transformers would run: truncating at ``max_length``, no padding
    (OnnxEncoder pads per batch). Applies ``do_lower_case`` to ``hf_tokenizer`` too, in place."""
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
        except Exception as exc:  # noqa: BLE001 - any exporter failure means: try the other one
            failures.append(f"torchscript: {_first_line(exc)}")
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
        except Exception as exc:  # noqa: BLE001
            failures.append(f"dynamo: {_first_line(exc)}")
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


def _session(path: str, level: str, threads: int | None = None, prepack: bool = True) -> Any:
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


_GRAPH_LEVELS = {
    "disable": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}

_CHECK_TEXTS = (
    "A man is playing a guitar.",
    "Hi",
    "The quick brown fox jumps over the lazy dog, again and again, until it is tired. " * 40,
)


def _max_difference(session: Any, torch_model: Any, batch: dict[str, np.ndarray]) -> float:
    """Largest |torch - onnxruntime| on the real (unmasked) tokens of ``batch``."""
    import torch

    names = {i.name for i in session.get_inputs()}
    got = session.run(None, {k: v for k, v in batch.items() if k in names})[0]
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
    try:
        pipeline = _read_pipeline(model_dir)
    except (OSError, ValueError) as exc:  # unreadable or malformed JSON
        raise ExportError(f"cannot read {model_dir}: {_first_line(exc)}") from exc
    transformer_dir = pipeline["transformer_dir"]

    import onnxruntime as ort
    import torch
    import transformers
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    try:
        config = AutoConfig.from_pretrained(transformer_dir)
    except Exception as exc:  # noqa: BLE001 - transformers raises many kinds
        raise ExportError(
            f"cannot read the transformer config in {transformer_dir}: {_first_line(exc)}"
        ) from exc
    if getattr(config, "is_encoder_decoder", False) or getattr(config, "is_decoder", False):
        raise ExportError(f"{model_dir}: {config.model_type} is not an encoder-only model")
    if pipeline["dim"] not in (None, config.hidden_size):
        raise ExportError(
            f"{model_dir}: pooling dimension {pipeline['dim']} differs from the transformer's "
            f"hidden size {config.hidden_size}"
        )
    try:
        hf_tokenizer = AutoTokenizer.from_pretrained(transformer_dir)
        # Eager attention: its graph is the one onnxruntime's attention fusion recognises.
        model = AutoModel.from_pretrained(transformer_dir, attn_implementation="eager")
    except Exception as exc:  # noqa: BLE001
        raise ExportError(
            f"cannot load the transformer in {transformer_dir}: {_first_line(exc)}"
        ) from exc
    if not getattr(hf_tokenizer, "is_fast", False):
        raise ExportError(f"{model_dir}: the tokenizer has no fast (tokenizers) version")
    model.eval()

    max_seq_length = pipeline["max_seq_length"]
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

    tokenizer = _prepare_tokenizer(hf_tokenizer, pipeline["do_lower_case"], max_seq_length)
    check_ids = [enc.ids for enc in tokenizer.encode_batch(_CHECK_TEXTS)]
    check = OnnxEncoder._pad(check_ids, pad_id, input_names)
    hf_ids = hf_tokenizer(list(_CHECK_TEXTS), truncation="longest_first", max_length=max_seq_length)
    if [list(ids) for ids in hf_ids["input_ids"]] != check_ids:
        raise ExportError(
            f"{model_dir}: the tokenizers library tokenises differently from "
            "transformers for this model"
        )

    with _staged(out_dir) as tmp:
        raw_path = os.path.join(tmp, "raw.onnx")
        model_path = os.path.join(tmp, MODEL_FILE)
        exporter = _torch_export(
            wrapper, tuple(example[n] for n in input_names), input_names, raw_path
        )
        opset = _opset(raw_path)
        raw_error = _max_difference(_session(raw_path, "all"), model, check)
        if not raw_error <= _EXPORT_TOLERANCE:
            raise ExportError(f"{model_dir}: the ONNX export differs from torch by {raw_error:.3g}")
        fused: dict[str, int] = {}
        optimized = False
        error = raw_error
        if optimize:
            try:
                fused = _optimize(raw_path, model_path, config)
                error = _max_difference(_session(model_path, "basic"), model, check)
                optimized = error <= _EXPORT_TOLERANCE
                if not optimized:
                    logger.warning(
                        "optimised graph differs from torch by %.3g; keeping the "
                        "unoptimised export",
                        error,
                    )
            except Exception as exc:  # noqa: BLE001 - an optimiser failure is not fatal
                logger.warning(
                    "onnxruntime optimiser failed, keeping the unoptimised export: %s",
                    _first_line(exc),
                )
        if not optimized:
            _save_with_external_data(raw_path, model_path)
            error, fused = raw_error, {}
        os.remove(raw_path)
        os.chmod(os.path.join(tmp, DATA_FILE), 0o666 & ~_umask())  # onnx writes it 0600
        tokenizer.save(os.path.join(tmp, TOKENIZER_FILE))
        metadata = {
            "format_version": FORMAT_VERSION,
            "pooling": pipeline["pooling"],
            "normalize": pipeline["normalize"],
            "max_seq_length": max_seq_length,
            "dim": int(config.hidden_size),
            "do_lower_case": pipeline["do_lower_case"],
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
        _write_metadata(tmp, metadata)
    return metadata


# Sentences for the int8 check: quantisation must keep every one close to its fp32 vector.
_QUANTIZE_CHECK_TEXTS = (
    *_CHECK_TEXTS,
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
    with _staged(out_dir) as tmp:
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
        except Exception as exc:  # noqa: BLE001 - the quantiser raises many kinds
            raise ExportError(f"int8 quantisation failed: {_first_line(exc)}") from exc
        if not os.path.isfile(os.path.join(tmp, DATA_FILE)):  # small graphs stay inline
            open(os.path.join(tmp, DATA_FILE), "wb").close()
        os.chmod(os.path.join(tmp, DATA_FILE), 0o666 & ~_umask())
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
        _write_metadata(tmp, metadata)
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
        _write_metadata(tmp, metadata)
    return metadata


@contextlib.contextmanager
def _no_logging():
    """Silence logging (onnxruntime's quantiser writes warnings to the root logger)."""
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


@contextlib.contextmanager
def _staged(out_dir: str) -> Iterator[str]:
    """A new folder beside ``out_dir`` that replaces it if the block succeeds.

    A crash or an error leaves ``out_dir`` as it was (a hard kill leaves the ``.tmp-``
    folder, which the index's next writer removes).
    """
    parent = os.path.dirname(os.path.abspath(out_dir))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.tmp-", dir=parent)
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it 0700; the export is an ordinary folder
    try:
        yield tmp
        _replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _write_metadata(folder: str, metadata: dict) -> None:
    with open(os.path.join(folder, METADATA_FILE), "w", encoding="utf-8") as f:
        json.dump(metadata, f, indent=2)
        f.write("\n")


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _replace_dir(new: str, target: str) -> None:
    """Move folder ``new`` to ``target``, replacing an existing one (rename aside, then delete)."""
    if not os.path.exists(target):
        os.replace(new, target)
        return
    old = tempfile.mkdtemp(prefix=f".{os.path.basename(target)}.old-", dir=os.path.dirname(target))
    previous = os.path.join(old, "previous")
    os.replace(target, previous)
    try:
        os.replace(new, target)
    except BaseException:
        os.replace(previous, target)  # put the old export back rather than leave none
        raise
    shutil.rmtree(old, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# Encoding


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
        paths = {
            name: os.path.join(onnx_dir, name)
            for name in (METADATA_FILE, MODEL_FILE, DATA_FILE, TOKENIZER_FILE)
        }
        missing = [name for name, path in paths.items() if not os.path.isfile(path)]
        if missing:
            raise OnnxFolderError(
                f"{onnx_dir} is not a complete bienc ONNX export "
                f"(missing {', '.join(missing)}); export the model again"
            )
        try:
            meta = _read_json(paths[METADATA_FILE])
        except ValueError as exc:
            raise OnnxFolderError(
                f"{paths[METADATA_FILE]} is damaged ({exc}); export again"
            ) from exc
        if meta.get("format_version") != FORMAT_VERSION:
            raise OnnxFolderError(
                f"{onnx_dir} was written by ONNX export format "
                f"{meta.get('format_version')}, this bienc reads "
                f"{FORMAT_VERSION}; export the model again"
            )
        self.metadata: dict[str, Any] = meta
        self.dim: int = int(meta["dim"])
        self.max_seq_length: int = int(meta["max_seq_length"])
        self.pooling: str = meta["pooling"]
        self.normalize: bool = bool(meta["normalize"])
        if self.pooling not in POOLING_MODES:
            raise OnnxFolderError(f"{onnx_dir}: unknown pooling {self.pooling!r}; export again")
        self._pad_id = int(meta["pad_token_id"])
        self._tokenizer = Tokenizer.from_file(paths[TOKENIZER_FILE])
        # Padding is done per batch in _pad, after sorting by length.
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(max_length=self.max_seq_length)
        level = graph_optimization_level or meta.get("graph_optimization_level", "all")
        self._session = _session(paths[MODEL_FILE], level, threads, prepack_weights)
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
            feeds = self._pad([token_ids[i] for i in rows], self._pad_id, self._input_names)
            hidden = self._session.run([self._output_name], feeds)[0]
            out[rows] = self._pool(hidden, feeds["attention_mask"])
            if progress is not None:
                progress(len(rows))
        return out

    @staticmethod
    def _pad(
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

    def _pool(self, hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """sentence-transformers' Pooling (+ Normalize) on right-padded token embeddings."""
        maskf = mask.astype(np.float32)
        counts = maskf.sum(axis=1, keepdims=True)
        if self.pooling in ("mean", "mean_sqrt_len_tokens"):
            summed = np.matmul(maskf[:, None, :], hidden)[:, 0, :]
            denominator = np.maximum(counts, 1e-9)
            if self.pooling == "mean_sqrt_len_tokens":
                denominator = np.sqrt(denominator)
            pooled = summed / denominator
        elif self.pooling == "cls":
            pooled = hidden[:, 0, :]
        elif self.pooling == "max":
            pooled = np.where(mask[:, :, None] > 0, hidden, -np.inf).max(axis=1)
        elif self.pooling == "weightedmean":
            weights = maskf * np.arange(1, mask.shape[1] + 1, dtype=np.float32)
            summed = np.matmul(weights[:, None, :], hidden)[:, 0, :]
            pooled = summed / np.maximum(weights.sum(axis=1, keepdims=True), 1e-9)
        elif self.pooling == "lasttoken":
            last = np.maximum(mask.sum(axis=1) - 1, 0)
            pooled = hidden[np.arange(len(hidden)), last]
        else:  # checked in __init__
            raise AssertionError(self.pooling)
        pooled = pooled.astype(np.float32, copy=False)
        if self.normalize:  # torch.nn.functional.normalize: x / max(||x||, 1e-12)
            norms = np.linalg.norm(pooled, axis=1, keepdims=True)
            pooled = pooled / np.maximum(norms, 1e-12)
        return pooled
