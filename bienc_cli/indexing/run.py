"""`bienc index`: bring an index up to date with its sources, incrementally and atomically.

One run: take the writer lock, read the live generation, walk the sources, decide for every
document whether it is new, changed, unchanged or gone, chunk and encode only what is new
(reusing the stored vector of any chunk whose text is already indexed), and write a new
generation. A run with nothing to encode never loads the model; a run that changes nothing
writes nothing.
"""

from __future__ import annotations

import dataclasses
import time

from bienc_cli.encoding.chunking import chunk_tokens
from bienc_cli.encoding.encoder import BACKENDS, load_encoder
from bienc_cli.encoding.model import load_tokenizer
from bienc_cli.encoding.onnx_folder import is_onnx_export
from bienc_cli.errors import (
    IncompatibleIndex,
    IndexCorrupt,
    IndexNotFound,
    UsageError,
)
from bienc_cli.indexing.encode import chunk_and_encode
from bienc_cli.indexing.model_choice import (
    choose_model,
    effective_settings,
    query_backend,
    with_backend,
)
from bienc_cli.indexing.plan import (
    Previous,
    absolute_source,
    check_rebuild_keeps,
    effective_sources,
    explain_kept_and_gone,
    jsonable,
    load_previous,
    removed_documents,
    report_remembered_skips,
    scan,
    skipped_files,
    skips_by_file,
    source_options,
)
from bienc_cli.indexing.request import EncoderFactory, IndexRequest, ProgressFn, RunReport
from bienc_cli.indexing.write import write_run
from bienc_cli.inputs.sources import SourceOptions, discover
from bienc_cli.store import generations as store
from bienc_cli.store import layout, lock
from bienc_cli.store.cache import EmbeddingCache


def run_index(
    request: IndexRequest,
    *,
    encoder_factory: EncoderFactory | None = None,
    progress: ProgressFn | None = None,
) -> RunReport:
    started = time.monotonic()
    factory = encoder_factory or load_encoder  # looked up now: tests patch it here
    root = request.root
    report = RunReport(index=str(root))
    check_request(request)
    with lock.write_lock(root, wait=request.wait):
        try:
            live = store.open_index(root)
        except IndexNotFound:
            live = None
        except (IndexCorrupt, IncompatibleIndex):
            if not request.rebuild:
                raise
            live = None
        manifest = live.manifest if live else None
        previous = load_previous(live, request.rebuild)
        request = dataclasses.replace(request, settings=effective_settings(request, manifest))
        model = choose_model(request, manifest)
        model = with_backend(model, request, manifest)
        if model.backend in ("onnx", "onnx-int8") and not is_onnx_export(model.onnx_dir):
            # chosen by name: export now, even with nothing to encode (auto waits for vectors)
            factory(model)
        report.model = model.name
        roots, options, gone = effective_sources(request, manifest)
        plan = scan(
            request, roots, options, None if request.rebuild else previous, report, progress
        )
        report_remembered_skips(plan, previous, report)
        removed_ids = removed_documents(plan, previous, roots, rebuild=request.rebuild)
        if request.rebuild:
            check_rebuild_keeps(request, model, plan, previous, removed_ids)
        explain_kept_and_gone(report, plan, previous, removed_ids, gone)
        new_rows, vectors = chunk_and_encode(
            plan.new_docs, model, request, previous, report, factory, progress
        )
        _count(report, previous, removed_ids, {row.doc.doc_id for row in new_rows})
        skipped_rows = skips_by_file(
            report, plan, previous, removed_ids, {row.doc.path for row in new_rows}
        )
        remembered = (
            (manifest["sources"], manifest.get("skipped_files"), manifest.get("skipped_rows", {}))
            if manifest
            else None
        )
        now = (
            {"roots": roots, "options": jsonable(options)},
            skipped_files(report),
            skipped_rows,
        )
        settings_changed = manifest is not None and (
            manifest["hnsw"]["ef"] != request.settings.ef
            or manifest["model"].get("backend") != query_backend(model)
            or manifest["model"].get("backend_choice") != model.backend
        )
        if (
            new_rows
            or removed_ids
            or plan.restat
            or request.rebuild
            or settings_changed
            or remembered != now
        ):
            write_run(
                request,
                model,
                roots,
                options,
                previous,
                plan,
                removed_ids,
                new_rows,
                vectors,
                skipped_rows,
                report,
            )
        elif live:
            report.documents = live.manifest["counts"]["documents"]
            report.chunks = live.live_count
        EmbeddingCache(root, model.vector_space).clear()  # its vectors are published now
    report.skipped.sort(key=lambda item: item.path)  # stable: a file's rows stay in order
    report.seconds = time.monotonic() - started
    return report


def check_request(request: IndexRequest) -> None:
    """Refuse bad options before the lock is taken: a run refused here creates nothing.

    Checked: the --index folder (see layout.check_index_folder), --backend, the SOURCE
    arguments (they exist, and none is an index), and --overlap against the model.
    """
    layout.check_index_folder(request.root)
    if request.backend is not None and request.backend not in BACKENDS:
        raise UsageError(
            f"unknown --backend {request.backend!r}; choose one of {', '.join(BACKENDS)}"
        )
    try:  # read without the lock, as queries do; the locked run reads it again
        manifest = None if request.rebuild else store.open_index(request.root).manifest
    except (IndexNotFound, IndexCorrupt, IncompatibleIndex):
        manifest = None
    if request.sources:
        stored = manifest["sources"]["options"] if manifest else {}
        options = dataclasses.asdict(SourceOptions()) | stored | request.options
        # discover checks every source before it yields anything; nothing is read here
        discover(
            [absolute_source(s) for s in request.sources],
            source_options(options),
            index=str(request.root),
        )
    if request.overlap is None:
        return  # the index's overlap, or the default, fits its model
    model = choose_model(request, manifest)
    tokens = chunk_tokens(load_tokenizer(model), model.max_seq_length)
    if not 0 <= request.overlap <= tokens // 2:
        raise UsageError(
            f"--overlap {request.overlap}: give 0 to {tokens // 2} tokens (at most half of "
            f"the {tokens}-token chunks of {model.name})"
        )


def _count(
    report: RunReport, previous: Previous | None, removed: set[str], written: set[str]
) -> None:
    """Documents added, updated, removed and kept, counted from what the new generation holds.

    ``written`` are the documents this run encoded rows for; a document read but left
    without chunks (no text to index) is reported as skipped, not added. So the counts add
    up: documents after = documents before + added - removed, and every old document is
    exactly one of updated, removed or unchanged.
    """
    old_ids = set(previous.doc_path) if previous else set()
    report.added = len(written - old_ids)
    report.updated = len(written & old_ids)
    report.removed = len(removed - written)
    report.unchanged = len(old_ids - removed - written)
