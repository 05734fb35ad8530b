"""Which model and backend a run encodes with, and the settings it keeps from the index:
the run's own options, else what the index remembers, else the defaults."""

from __future__ import annotations

import dataclasses
from typing import Any

from bienc_cli.encoding.encoder import BACKENDS
from bienc_cli.encoding.model import ModelInfo, requested_model, resolve_model
from bienc_cli.encoding.onnx_folder import is_onnx_export
from bienc_cli.errors import (
    IncompatibleIndex,
    ModelUnavailable,
    UsageError,
)
from bienc_cli.indexing.request import IndexRequest, IndexSettings
from bienc_cli.store import layout


def with_backend(
    model: ModelInfo, request: IndexRequest, manifest: dict[str, Any] | None
) -> ModelInfo:
    """The backend: this run's --backend, else the one the index remembers, else auto.

    The index remembers the choice (``backend_choice``) apart from the backend its queries
    use: an auto index that has encoded nothing yet (an empty folder) has no ONNX export and
    queries that would use sentence-transformers, but it exports the first time it encodes.
    Only the vectors an index holds constrain the choice: int8 ones are never mixed with
    fp32 ones, and an index without vectors can switch freely.
    """
    backend = request.backend or remembered_backend(manifest) or "auto"
    if backend not in BACKENDS:
        raise UsageError(f"unknown --backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    held = None
    if manifest and manifest["counts"]["chunks"] and not request.rebuild:
        held = manifest["model"].get("backend")
    if held and (held == "onnx-int8") != (backend == "onnx-int8"):
        raise UsageError(
            f"index at {request.root} holds {precision(held)} vectors; encoding with "
            f"--backend {backend} would mix in {precision(backend)} ones: add --rebuild"
        )
    folder = layout.onnx_dir(request.root, model.fingerprint, backend)
    return dataclasses.replace(model, backend=backend, onnx_dir=str(folder))


def remembered_backend(manifest: dict[str, Any] | None) -> str | None:
    """The --backend the index was built with, if it recorded one."""
    if manifest is None:
        return None
    stored = manifest["model"]
    if "backend_choice" in stored:
        return stored["backend_choice"]
    # Written before the choice was recorded: only the backend queries use is known, and
    # sentence-transformers there may be auto's fallback, or an index that encoded nothing.
    return "onnx-int8" if stored.get("backend") == "onnx-int8" else None


def precision(backend: str) -> str:
    return "int8" if backend == "onnx-int8" else "fp32"


def query_backend(model: ModelInfo) -> str:
    """The backend queries will use: onnx when its export exists (an auto run whose export
    failed fell back to sentence-transformers and left none), onnx-int8 for an int8 index."""
    if model.backend == "onnx-int8":
        return "onnx-int8"
    if (
        model.backend != "sentence-transformers"
        and model.onnx_dir
        and is_onnx_export(model.onnx_dir)
    ):
        return "onnx"
    return "sentence-transformers"


def effective_settings(request: IndexRequest, manifest: dict[str, Any] | None) -> IndexSettings:
    """Chunk overlap and ef: this run's if given, else the index's, else the defaults.

    Changing the overlap of an existing index would mix two chunkings: it needs --rebuild.
    """
    settings = request.settings
    stored_overlap = manifest["chunking"]["overlap"] if manifest else None
    stored_ef = manifest["hnsw"]["ef"] if manifest else None
    if (
        request.overlap is not None
        and stored_overlap is not None
        and request.overlap != stored_overlap
        and not request.rebuild
    ):
        raise UsageError(
            f"index at {request.root} was chunked with --overlap {stored_overlap}; "
            f"re-chunking with --overlap {request.overlap} needs --rebuild"
        )
    overlap = next(v for v in (request.overlap, stored_overlap, settings.overlap) if v is not None)
    ef = next(v for v in (request.ef, stored_ef, settings.ef) if v is not None)
    return dataclasses.replace(settings, overlap=overlap, ef=ef)


def choose_model(request: IndexRequest, manifest: dict[str, Any] | None) -> ModelInfo:
    """The model to encode with: --model or $BIENC_MODEL, else the index's own (found by
    name, else at its recorded folder; a rebuild keeps it too), else the default.
    IncompatibleIndex for a model other than the one the index was built with, unless
    rebuilding."""
    asked = requested_model(request.model)
    if manifest is None:
        return resolve_model(asked)
    stored = manifest["model"]
    if asked is None:
        try:
            model = resolve_model(stored["name"])
        except ModelUnavailable:
            model = resolve_model(stored["path"])  # the name moved; the folder may still be there
    else:
        model = resolve_model(asked)
    if request.rebuild:
        return model
    if model.fingerprint != stored["fingerprint"] or model.dim != stored["dim"]:
        raise IncompatibleIndex(
            f"index at {request.root} was built with {stored['name']} ({stored['dim']}-d), "
            f"not {model.name} ({model.dim}-d); pass --model {stored['name']} "
            "or rebuild with --rebuild"
        )
    return model
