"""`bienc index`: bring an index up to date with its sources, incrementally and atomically.

One run: take the writer lock, read the live generation, walk the sources, decide for every
document whether it is new, changed, unchanged or gone, chunk and encode only what is new
(reusing the stored vector of any chunk whose text is already indexed), and write a new
generation. A run with nothing to encode never loads the model; a run that changes nothing
writes nothing.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import glob
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bienc_cli import __version__
from bienc_cli.encoding.chunking import Chunk, Chunker, chunk_tokens
from bienc_cli.encoding.encoder import BACKENDS, Encoder, load_encoder
from bienc_cli.encoding.model import ModelInfo, load_tokenizer, requested_model, resolve_model
from bienc_cli.encoding.onnx_folder import is_onnx_export
from bienc_cli.errors import (
    ExitStatus,
    IncompatibleIndex,
    IndexCorrupt,
    IndexNotFound,
    ModelUnavailable,
    UsageError,
)
from bienc_cli.inputs.documents import Document, Note, Skipped, real_path, stored_path
from bienc_cli.inputs.readers import TableOptions, cannot_open, read_file
from bienc_cli.inputs.sources import SourceOptions, discover, is_gone, may_exist
from bienc_cli.inputs.tables import ROW_REPORT_LIMIT, is_table
from bienc_cli.store import generations as store
from bienc_cli.store import graph, layout, lock, sidecar
from bienc_cli.store.cache import EmbeddingCache

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

log = logging.getLogger(__name__)

# Chunks encoded between two saves to the embedding cache: what a crash can cost at most.
_CACHE_BLOCK = 512
# stage ("scan" | "encode"), items done so far, total if known
ProgressFn = Callable[[str, int, "int | None"], None]
EncoderFactory = Callable[[ModelInfo], Encoder]

# Options a user can set on the command line; what one run sets is stored in the manifest and
# reused by the next run unless that run sets it again (so cron can run plain `bienc index`):
# an option given replaces the remembered value, and `--no-include` and the like clear it.
SOURCE_OPTION_NAMES = tuple(f.name for f in dataclasses.fields(SourceOptions))
TABLE_OPTION_NAMES = ("text_columns", "id_column")


@dataclass(frozen=True)
class IndexSettings:
    overlap: int = 32  # tokens shared by consecutive chunks
    M: int = 16  # HNSW graph degree
    ef_construction: int = 200
    ef: int = 128  # default search breadth, stored in the manifest (hnswlib does not save it)
    batch_size: int = 32
    compact_ratio: float = 0.2  # rebuild the graph once this share of its items is deleted


@dataclass
class IndexRequest:
    root: Path
    sources: Sequence[str] = ()  # directories, files, glob patterns
    stdin_paths: Sequence[str] = ()  # paths read from stdin (`-`); not remembered
    model: str | None = None
    options: dict[str, Any] = field(default_factory=dict)  # only what the user set
    settings: IndexSettings = IndexSettings()
    backend: str | None = None  # auto | onnx | sentence-transformers; None: the index's, else auto
    overlap: int | None = None  # None: the index's stored value, else IndexSettings' default
    ef: int | None = None  # likewise
    rebuild: bool = False
    wait: float | None = None  # seconds to wait for the lock; None: as long as it takes


@dataclass
class RunReport:
    """What one `bienc index` run did. ``to_dict`` is the `--json` run report."""

    index: str
    added: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0
    chunks_encoded: int = 0
    chunks_reused: int = 0  # vectors taken from the index (unchanged chunk text)
    chunks_resumed: int = 0  # vectors taken from the cache of an interrupted run
    documents: int = 0  # in the index after the run
    chunks: int = 0
    compacted: bool = False
    generation: int | None = None  # None when nothing had to be written
    model: str = ""
    backend: str | None = None  # the encoder that ran, when one did
    seconds: float = 0.0
    skipped: list[Skipped] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)

    @property
    def errors(self) -> list[Skipped]:
        return [s for s in self.skipped if s.error]

    @property
    def exit_status(self) -> ExitStatus:
        return ExitStatus.PARTIAL if self.errors else ExitStatus.OK

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "status": "partial" if self.errors else "ok",
            "exit_code": int(self.exit_status),
            "generation": self.generation,
            "model": self.model,
            "backend": self.backend,
            "added": self.added,
            "updated": self.updated,
            "removed": self.removed,
            "unchanged": self.unchanged,
            "documents": self.documents,
            "chunks": self.chunks,
            "chunks_encoded": self.chunks_encoded,
            "chunks_reused": self.chunks_reused,
            "chunks_resumed": self.chunks_resumed,
            "compacted": self.compacted,
            "seconds": round(self.seconds, 3),
            "skipped": [
                {
                    "path": stored_path(s.path),
                    "row_id": s.row_id,
                    "reason": s.reason,
                    "error": s.error,
                }
                for s in self.skipped
            ],
            "notes": [{"path": stored_path(n.path), "message": n.message} for n in self.notes],
        }


@dataclass
class _Previous:
    """What the live generation knows, in the shapes the planner needs."""

    generation: store.Generation
    table: pa.Table
    file_stat: dict[str, tuple[int, int]]  # path -> (size, mtime_ns)
    doc_hash: dict[str, str]  # doc_id -> doc_hash
    doc_path: dict[str, str]  # doc_id -> path
    chunk_label: dict[str, int]  # chunk_hash -> the graph item holding that chunk's vector
    stored_id: dict[str, str]  # doc_id -> the doc_id column's value (see documents.stored_path)

    @classmethod
    def load(cls, generation: store.Generation) -> _Previous:
        table = generation.read_sidecar()
        cols = table.select(
            ["vector_label", "doc_id", "path", "size", "mtime_ns", "doc_hash", "chunk_hash"]
        )
        data = cols.to_pydict()
        file_stat, doc_hash, doc_path, chunk_label, stored_id = {}, {}, {}, {}, {}
        for i, stored in enumerate(data["doc_id"]):
            # The planner compares with what discovery finds: paths as os.fsdecode makes them.
            path, doc_id = _real_ids(data["path"][i], stored)
            file_stat[path] = (data["size"][i], data["mtime_ns"][i])
            doc_hash[doc_id] = data["doc_hash"][i]
            doc_path[doc_id] = path
            chunk_label[data["chunk_hash"][i]] = data["vector_label"][i]
            stored_id[doc_id] = stored
        return cls(generation, table, file_stat, doc_hash, doc_path, chunk_label, stored_id)


def _previous(live: store.Generation | None, rebuild: bool) -> _Previous | None:
    """What the live generation holds. A rebuild reads everything again and keeps from it
    only what it cannot read now; a live generation too damaged to read has nothing to give
    (the rebuild is then how to repair it)."""
    if live is None:
        return None
    try:
        return _Previous.load(live)
    except IndexCorrupt:
        if not rebuild:
            raise
        return None


@dataclass
class _Plan:
    """The scan's verdict: which documents to add, which old ones to keep or drop."""

    new_docs: list[Document] = field(default_factory=list)
    restat: dict[str, tuple[int, int]] = field(default_factory=dict)  # doc_id -> new stat
    seen_docs: set[str] = field(default_factory=set)
    seen_paths: set[str] = field(default_factory=set)
    unchanged_paths: set[str] = field(default_factory=set)  # same size and mtime: not read
    # Paths that could not be examined or read (Skipped.keep): documents at or under them
    # are kept.
    unseen: dict[str, Skipped] = field(default_factory=dict)


def run_index(
    request: IndexRequest,
    *,
    encoder_factory: EncoderFactory | None = None,
    progress: ProgressFn | None = None,
) -> RunReport:
    started = time.monotonic()
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
        previous = _previous(live, request.rebuild)
        request = dataclasses.replace(request, settings=_effective_settings(request, manifest))
        model = choose_model(request, manifest)
        model = _with_backend(model, request, manifest)
        if model.backend in ("onnx", "onnx-int8") and not is_onnx_export(model.onnx_dir):
            # chosen by name: export now, even with nothing to encode (auto waits for vectors)
            (encoder_factory or load_encoder)(model)
        report.model = model.name
        roots, options, gone = _effective_sources(request, manifest)
        plan = _scan(
            request, roots, options, None if request.rebuild else previous, report, progress
        )
        _report_remembered_skips(plan, previous, report)
        removed_ids = _removed_documents(plan, previous, roots, rebuild=request.rebuild)
        if request.rebuild:
            _check_rebuild_keeps(request, model, plan, previous, removed_ids)
        _explain_kept_and_gone(report, plan, previous, removed_ids, gone)
        new_rows, vectors = _chunk_and_encode(
            plan.new_docs, model, request, previous, report, encoder_factory, progress
        )
        _count(report, previous, removed_ids, {row.doc.doc_id for row in new_rows})
        skipped_rows = _skipped_rows(report, plan, previous, removed_ids, new_rows)
        remembered = (
            (manifest["sources"], manifest.get("skipped_files"), manifest.get("skipped_rows", {}))
            if manifest
            else None
        )
        now = (
            {"roots": roots, "options": _jsonable(options)},
            _skipped_files(report),
            skipped_rows,
        )
        settings_changed = manifest is not None and (
            manifest["hnsw"]["ef"] != request.settings.ef
            or manifest["model"].get("backend") != _query_backend(model)
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
            _write(
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
            [_absolute_source(s) for s in request.sources],
            _source_options(options),
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


def _with_backend(
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
            f"index at {request.root} holds {_precision(held)} vectors; encoding with "
            f"--backend {backend} would mix in {_precision(backend)} ones: add --rebuild"
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


def _precision(backend: str) -> str:
    return "int8" if backend == "onnx-int8" else "fp32"


def _query_backend(model: ModelInfo) -> str:
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


def _effective_settings(request: IndexRequest, manifest: dict[str, Any] | None) -> IndexSettings:
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


def _effective_sources(
    request: IndexRequest, manifest: dict[str, Any] | None
) -> tuple[list[str], dict[str, Any], list[str]]:
    """Roots to scan, the options to scan them with, and the remembered roots that are gone.

    Every remembered root is scanned again, so that a plain re-run sees deletions everywhere;
    options set in this run replace the remembered ones. ``--rebuild`` with sources forgets
    the old roots.
    """
    stored = manifest["sources"] if manifest else {"roots": []}
    options = remembered_options(manifest) | request.options
    given = [_absolute_source(s) for s in request.sources]
    remembered = [] if (request.rebuild and given) else list(stored["roots"])
    present = existing_roots(remembered, _source_options(options))
    gone = [r for r in remembered if r not in present and r not in given]
    roots = list(dict.fromkeys([*present, *given]))
    if not roots and not request.stdin_paths:
        # Every source gone at once looks more like an unmounted disk than a decision:
        # touch nothing (as rsync refuses a missing source), and say how to go on.
        if gone:
            raise UsageError(
                f"nothing to index: every source the index remembers is gone "
                f"({', '.join(gone)}); the index is unchanged. Give SOURCE paths "
                "(with --rebuild to forget the old ones)"
            )
        raise UsageError(
            "nothing to index: give one or more SOURCE paths (or - to read them from stdin)"
        )
    return roots, options, gone


def remembered_options(manifest: dict[str, Any] | None) -> dict[str, Any]:
    """The reading options an index remembers (the defaults for any it predates, or for no
    index), as the manifest stores them."""
    defaults = dataclasses.asdict(SourceOptions()) | {"text_columns": (), "id_column": None}
    stored = manifest["sources"]["options"] if manifest else {}
    return _jsonable(defaults) | stored


def existing_roots(roots: Sequence[str], options: SourceOptions | None = None) -> list[str]:
    """Remembered roots that are not gone for sure (see sources.is_gone): a root that cannot
    be examined stays, so that the scan reports it and its documents are kept; documents
    under a vanished one are removed, because their files are gone."""
    options = options or SourceOptions()
    return [r for r in roots if not is_gone(r, options)]


def _source_options(options: dict[str, Any]) -> SourceOptions:
    return SourceOptions(**{k: _tuple(options[k]) for k in SOURCE_OPTION_NAMES})


def _absolute_source(source: str) -> str:
    expanded = os.path.expanduser(source)
    return expanded if os.path.isabs(expanded) else os.path.abspath(expanded)


def _scan(
    request: IndexRequest,
    roots: list[str],
    options: dict[str, Any],
    previous: _Previous | None,
    report: RunReport,
    progress: ProgressFn | None,
) -> _Plan:
    source_options = _source_options(options)
    table_options = _table_options(options)
    # Tables are read again, changed or not, when the columns to read them by changed.
    reread_tables = previous is not None and table_options != _table_options(
        remembered_options(previous.generation.manifest)
    )
    plan = _Plan()
    files = 0
    found = discover(
        roots, source_options, stdin_paths=request.stdin_paths, index=str(request.root)
    )
    for item in found:
        if isinstance(item, Skipped):
            report.skipped.append(item)
            if item.keep is not None:
                plan.unseen[item.keep] = item
            continue
        plan.seen_paths.add(item.path)
        files += 1
        if progress:
            progress("scan", files, None)
        if (
            previous
            and previous.file_stat.get(item.path) == (item.size, item.mtime_ns)
            and not (reread_tables and is_table(item.path))
        ):
            problem = cannot_open(item.path)
            if problem is None:
                plan.unchanged_paths.add(item.path)
            else:
                report.skipped.append(_unread(plan, problem))
            continue
        mark = len(plan.new_docs), set(plan.restat)
        for event in read_file(item, table_options):
            if isinstance(event, Document):
                _plan_document(plan, previous, event)
            elif isinstance(event, Note):
                report.notes.append(event)
            elif event.error and event.row_id is None:
                _forget_file(plan, *mark)
                report.skipped.append(_unread(plan, event))
            else:
                report.skipped.append(event)
    return plan


def _table_options(options: dict[str, Any]) -> TableOptions:
    return TableOptions(
        text_columns=tuple(options["text_columns"] or ()), id_column=options["id_column"]
    )


def _forget_file(plan: _Plan, new_docs_before: int, restat_before: set[str]) -> None:
    """The file failed (maybe after some rows were read): index none of this run's reading
    of it."""
    for doc in plan.new_docs[new_docs_before:]:
        plan.seen_docs.discard(doc.doc_id)
    del plan.new_docs[new_docs_before:]
    for doc_id in set(plan.restat) - restat_before:
        del plan.restat[doc_id]
        plan.seen_docs.discard(doc_id)


def _unread(plan: _Plan, problem: Skipped) -> Skipped:
    """A file that could not be read: while it exists (the failure may be transient) its old
    documents stay, and the report says so; they go when it is gone."""
    plan.seen_paths.discard(problem.path)
    if not may_exist(problem.path):
        return problem
    problem = dataclasses.replace(problem, keep=problem.path)
    plan.unseen[problem.path] = problem
    return problem


def _tuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _plan_document(plan: _Plan, previous: _Previous | None, doc: Document) -> None:
    if doc.doc_id in plan.seen_docs:
        return  # the same document reached twice (e.g. a file given twice)
    plan.seen_docs.add(doc.doc_id)
    if previous and previous.doc_hash.get(doc.doc_id) == text_hash(doc.text):
        plan.restat[doc.doc_id] = (doc.size, doc.mtime_ns)
    else:
        plan.new_docs.append(doc)


def _removed_documents(
    plan: _Plan, previous: _Previous | None, roots: list[str], *, rebuild: bool = False
) -> set[str]:
    """Old documents that are gone: replaced, deleted, ignored now, or no longer in their file;
    for a rebuild, every one but those it could not look at or read (they are kept)."""
    if previous is None:
        return set()
    replaced = {d.doc_id for d in plan.new_docs}
    removed = set()
    exists: dict[str, bool] = {}
    for doc_id, path in previous.doc_path.items():
        if doc_id in replaced:
            removed.add(doc_id)
        elif path in plan.unchanged_paths:
            continue
        elif plan.unseen and _unseen_above(path, plan.unseen) is not None:
            continue  # could not be looked at or read: not the same as deleted
        elif path in plan.seen_paths:
            if doc_id not in plan.seen_docs:
                removed.add(doc_id)  # a row that left its table, or a file now empty/binary
        elif rebuild or _under(path, roots):
            removed.add(doc_id)  # deleted, or now ignored / excluded; or left out of a rebuild
        else:
            if path not in exists:
                exists[path] = may_exist(path)
            if not exists[path]:
                removed.add(doc_id)
    return removed


def _check_rebuild_keeps(
    request: IndexRequest,
    model: ModelInfo,
    plan: _Plan,
    previous: _Previous | None,
    removed: set[str],
) -> None:
    """A rebuild copies the rows and vectors of what it could not read into the new
    generation, so that no content is lost; they fit only if it keeps the model, the
    precision and the chunking. Otherwise refuse, before anything is encoded or written."""
    kept = len(previous.doc_path.keys() - removed) if previous else 0
    if previous is None or not kept:
        return
    old = previous.generation.manifest
    if (
        old["model"]["fingerprint"] == model.fingerprint
        and _precision(old["model"].get("backend", "")) == _precision(model.backend)
        and old["chunking"]["overlap"] == request.settings.overlap
    ):
        return
    where = ", ".join(real_path(p) for p in sorted(plan.unseen)[:3])
    raise UsageError(
        f"cannot rebuild {request.root} with another model, precision or --overlap now: "
        f"{_documents(kept)} cannot be read ({where}) and would be lost; make them readable, "
        "or rebuild with the index's settings (their content from the last run is kept)"
    )


def _unseen_above(path: str, unseen: dict[str, Skipped]) -> str | None:
    """The path in ``unseen`` that is ``path`` or a folder above it, if any."""
    current = path
    while True:
        if current in unseen:
            return current
        parent = os.path.dirname(current)
        if parent == current:
            return None
        current = parent


def _explain_kept_and_gone(
    report: RunReport,
    plan: _Plan,
    previous: _Previous | None,
    removed: set[str],
    gone: list[str],
) -> None:
    """Say in the report what happened to the documents of what could not be looked at or read
    (kept) and of remembered roots that are gone (removed, and the root forgotten)."""
    kept: dict[str, int] = {}
    lost: dict[str, int] = {}
    for doc_id, path in (previous.doc_path if previous else {}).items():
        if doc_id in removed:
            root = next((r for r in gone if _under(path, [r])), None)
            if root is not None:
                lost[root] = lost.get(root, 0) + 1
        elif plan.unseen:
            where = _unseen_above(path, plan.unseen)
            if where is not None:
                kept[where] = kept.get(where, 0) + 1
    for i, item in enumerate(report.skipped):
        if item.keep is not None and kept.get(item.keep):
            n = kept.pop(item.keep)
            reason = f"{item.reason}; kept its {_documents(n)} from the last run"
            report.skipped[i] = dataclasses.replace(item, reason=reason)
    for root in gone:
        reason = "gone: no longer indexed"
        if lost.get(root):
            reason += f", its {_documents(lost[root])} removed"
        report.skipped.append(Skipped(root, reason, error=True))


def _documents(n: int) -> str:
    return f"{n} document{'s' if n != 1 else ''}"


def _under(path: str, roots: list[str]) -> bool:
    return any(
        fnmatch.fnmatch(path, r)
        if glob.has_magic(r)
        else path == r or path.startswith(r.rstrip(os.sep) + os.sep)
        for r in roots
    )


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


@dataclass
class _Row:
    doc: Document
    chunk: Chunk
    doc_hash: str
    chunk_hash: str
    n_chunks: int


def _reusable(previous: _Previous | None, request: IndexRequest) -> dict[str, int]:
    """chunk_hash -> the previous graph item whose vector a chunk of that text takes (none
    on a rebuild, which encodes everything again)."""
    return previous.chunk_label if previous and not request.rebuild else {}


def _chunk_and_encode(
    docs: list[Document],
    model: ModelInfo,
    request: IndexRequest,
    previous: _Previous | None,
    report: RunReport,
    encoder_factory: EncoderFactory | None,
    progress: ProgressFn | None,
) -> tuple[list[_Row], np.ndarray | None]:
    import numpy as np

    if not docs:
        return [], None
    chunker = Chunker.for_model(
        load_tokenizer(model), model.max_seq_length, request.settings.overlap
    )
    rows: list[_Row] = []
    empty: dict[str, int] = {}  # path -> documents without chunks, for flood control
    for doc in docs:
        chunks = chunker.chunk(doc.text)
        if not chunks:
            empty[doc.path] = empty.get(doc.path, 0) + 1
            if empty[doc.path] <= ROW_REPORT_LIMIT:
                report.skipped.append(Skipped(doc.path, "no text to index", row_id=doc.row_id))
            continue
        doc_hash = text_hash(doc.text)
        for chunk in chunks:
            rows.append(_Row(doc, chunk, doc_hash, text_hash(chunk.text), len(chunks)))
    for path, count in empty.items():
        if count > ROW_REPORT_LIMIT:  # one line for the rest, as the table readers do
            more = count - ROW_REPORT_LIMIT
            report.skipped.append(
                Skipped(path, f"{more} more rows with no text to index", row_id="*")
            )
    vectors = np.zeros((len(rows), model.dim), dtype=np.float32)
    reuse = _reusable(previous, request)
    reused = [i for i, r in enumerate(rows) if r.chunk_hash in reuse]
    if reused:
        labels = [reuse[rows[i].chunk_hash] for i in reused]
        vectors[reused] = store.row_vectors(previous.generation, labels)  # type: ignore[union-attr]
    cache = EmbeddingCache(request.root, model.vector_space)
    cached = cache.load()
    from_cache = [
        i for i, r in enumerate(rows) if r.chunk_hash not in reuse and r.chunk_hash in cached
    ]
    for i in from_cache:
        vectors[i] = cached[rows[i].chunk_hash]
    to_encode = [
        i for i, r in enumerate(rows) if r.chunk_hash not in reuse and r.chunk_hash not in cached
    ]
    if to_encode:
        _encode_blocks(
            rows, to_encode, vectors, model, request, cache, encoder_factory, progress, report
        )
    report.chunks_resumed = len(from_cache)
    report.chunks_encoded = len(to_encode)
    report.chunks_reused = len(reused)
    return rows, vectors


def _encode_blocks(
    rows, to_encode, vectors, model, request, cache, encoder_factory, progress, report
):
    """Encode in blocks, saving each block to the embedding cache as soon as it is done.

    Chunks are sorted by length first, so each block, and each batch in it, carries little
    padding; a crash loses at most the block in progress.
    """
    encoder = (encoder_factory or load_encoder)(model)
    report.backend = getattr(encoder, "backend", model.backend)
    order = sorted(to_encode, key=lambda i: len(rows[i].chunk.text))
    done = 0

    def advance(n: int) -> None:
        nonlocal done
        done += n
        if progress:
            progress("encode", done, len(order))

    for start in range(0, len(order), _CACHE_BLOCK):
        block = order[start : start + _CACHE_BLOCK]
        encoded = encoder.encode(
            [rows[i].chunk.text for i in block],
            batch_size=request.settings.batch_size,
            progress=advance,
        )
        vectors[block] = encoded
        cache.append([rows[i].chunk_hash for i in block], encoded)


def _count(
    report: RunReport, previous: _Previous | None, removed: set[str], written: set[str]
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


def _write(
    request: IndexRequest,
    model: ModelInfo,
    roots: list[str],
    options: dict[str, Any],
    previous: _Previous | None,
    plan: _Plan,
    removed_ids: set[str],
    new_rows: list[_Row],
    vectors: np.ndarray | None,
    skipped_rows: dict[str, list[dict[str, Any]]],
    report: RunReport,
) -> None:
    import pyarrow as pa
    import pyarrow.compute as pc

    settings = request.settings
    old_manifest = previous.generation.manifest if previous else None
    next_label = old_manifest["counts"]["next_label"] if old_manifest else 0
    kept = previous.table if previous else sidecar.sidecar_schema().empty_table()
    removed_items: set[int] = set()  # the graph items of the chunks removed
    if previous and removed_ids:
        stored_ids = sorted(previous.stored_id[d] for d in removed_ids)
        drop = pc.is_in(kept["doc_id"], pa.array(stored_ids, pa.string()))
        removed_items = set(kept.filter(drop)["vector_label"].to_pylist())
        kept = kept.filter(pc.invert(drop))
    if plan.restat:
        assert previous is not None  # only documents of the previous generation are restat
        kept = _restat(kept, {previous.stored_id[d]: st for d, st in plan.restat.items()})
    if request.rebuild:  # a new graph: labels start again, after those of the rows it keeps
        next_label = max(kept["label"].to_pylist(), default=-1) + 1
    new_labels = list(range(next_label, next_label + len(new_rows)))
    new_items = _vector_labels(new_rows, new_labels, vectors, _reusable(previous, request))
    table = pa.concat_tables([kept, _rows_table(new_rows, new_labels, new_items)]).sort_by("label")

    items = set(table["vector_label"].to_pylist())
    dead = removed_items - items  # graph items no chunk holds any more
    old_deleted = old_manifest["counts"]["deleted"] if old_manifest else 0
    deleted = old_deleted + len(dead)
    live = table.num_rows
    # A rebuild starts a new graph; it holds the old vectors only of what could not be read.
    compact = request.rebuild or (
        deleted > 0 and deleted > settings.compact_ratio * (len(items) + deleted)
    )
    if compact or previous is None:
        hnsw, table = _new_graph(previous, table, new_items, vectors, model, settings)
        deleted = 0
    else:
        hnsw = _patched_graph(previous, dead, new_labels, new_items, vectors, settings)
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    documents = len(set(table["doc_id"].to_pylist()))
    manifest = {
        "format": layout.FORMAT,
        "format_version": layout.FORMAT_VERSION,
        "bienc_version": __version__,
        "created_at": old_manifest["created_at"] if old_manifest else now,
        "updated_at": now,
        "model": {
            "name": model.name,
            "path": model.path,
            "fingerprint": model.fingerprint,
            "dim": model.dim,
            "max_seq_length": model.max_seq_length,
            "pooling": model.pooling,
            "normalize": True,  # bienc stores unit vectors whatever the model does
            "backend": _query_backend(model),  # what queries use
            "backend_choice": model.backend,  # what the next run encodes with, unless told
            "onnx_dir": str(layout.onnx_dir(Path(), model.fingerprint, _query_backend(model))),
        },
        "chunking": {
            "tokenizer": "model",
            "max_tokens": model.max_seq_length,
            "overlap": settings.overlap,
        },
        "hnsw": {
            "space": "cosine",
            "M": settings.M,
            "ef_construction": settings.ef_construction,
            "ef": settings.ef,
            "max_elements": hnsw.get_max_elements(),
            "elements": hnsw.element_count,
        },
        "counts": {
            "documents": documents,
            "chunks": live,
            "vectors": len(set(table["vector_label"].to_pylist())),  # live graph items
            "deleted": deleted,
            "next_label": next_label + len(new_rows),
        },
        "sources": {"roots": roots, "options": _jsonable(options)},
        # Files skipped on purpose (empty, binary, too large), so `info` does not call them new.
        "skipped_files": _skipped_files(report),
        # What the reading of each indexed file skipped, reported again while it is unchanged.
        "skipped_rows": skipped_rows,
        "last_run": {
            "added": report.added,
            "updated": report.updated,
            "removed": report.removed,
            "unchanged": report.unchanged,
            "skipped": len(report.skipped),
            "errors": len(report.errors),
        },
    }
    generation = store.write_generation(request.root, hnsw, table, manifest)
    report.generation = int(generation.name[1:])
    report.documents = documents
    report.chunks = live
    report.compacted = compact


def _report_remembered_skips(plan: _Plan, previous: _Previous | None, report: RunReport) -> None:
    """Report again what was skipped inside files that are not read again because they did
    not change (a broken JSONL line stays broken): cron hears about it every run, as it
    does about files that cannot be read at all."""
    if previous is None:
        return
    remembered = previous.generation.manifest.get("skipped_rows", {})
    for path in sorted(plan.unchanged_paths & remembered.keys()):
        for item in remembered[path]:
            report.skipped.append(
                Skipped(path, item["reason"], error=item["error"], row_id=item["row_id"])
            )


def _skipped_rows(
    report: RunReport,
    plan: _Plan,
    previous: _Previous | None,
    removed: set[str],
    new_rows: list[_Row],
) -> dict[str, list[dict[str, Any]]]:
    """For each file the new generation holds documents of, what the reading that produced
    them skipped: this run's for a file read now, else what the previous generation kept."""
    remembered = previous.generation.manifest.get("skipped_rows", {}) if previous else {}
    read_now = plan.seen_paths - plan.unchanged_paths
    fresh: dict[str, list[dict[str, Any]]] = {}
    for item in report.skipped:
        if item.path in read_now:
            fresh.setdefault(item.path, []).append(
                {"row_id": item.row_id, "reason": item.reason, "error": item.error}
            )
    held = {row.doc.path for row in new_rows}
    if previous:
        held.update(path for doc_id, path in previous.doc_path.items() if doc_id not in removed)
    out = {}
    for path in sorted(held):
        skips = fresh.get(path) if path in read_now else remembered.get(path)
        if skips:
            out[path] = skips
    return out


def _skipped_files(report: RunReport, limit: int = 10_000) -> dict[str, list[int]]:
    import stat as stat_module

    out = {}
    for item in report.skipped:
        if item.row_id is None and not item.error and len(out) < limit:
            try:
                stat = os.stat(item.path)
            except OSError:
                continue
            # Files only: a folder's mtime (an index skipped in the tree, a symlinked
            # folder) changes with its contents and would make every run write.
            if stat_module.S_ISREG(stat.st_mode):
                out[item.path] = [stat.st_size, stat.st_mtime_ns]
    return out


def _vector_labels(
    rows: list[_Row], labels: list[int], vectors: np.ndarray | None, reuse: dict[str, int]
) -> list[int]:
    """The graph item each new chunk's vector goes to, so that identical vectors share one.

    A chunk whose text the previous generation holds keeps that text's item; one whose
    vector is byte-identical to another's in this run (a repeated line, a copied file) goes
    to the first one's; any other gets an item of its own, at its own label.
    """
    if not rows:
        return []
    assert vectors is not None
    keys = [_vector_key(v) for v in vectors]
    known: dict[bytes, int] = {}
    for row, key in zip(rows, keys):
        if row.chunk_hash in reuse:
            known.setdefault(key, reuse[row.chunk_hash])
    return [
        reuse[row.chunk_hash] if row.chunk_hash in reuse else known.setdefault(key, label)
        for row, label, key in zip(rows, labels, keys)
    ]


def _vector_key(vector: np.ndarray) -> bytes:
    return hashlib.blake2b(vector.tobytes(), digest_size=16).digest()


def _patched_graph(previous, dead, new_labels, new_items, vectors, settings):
    """The previous graph, its unused items marked deleted and the new vectors added."""
    fresh = [i for i, (label, item) in enumerate(zip(new_labels, new_items)) if label == item]
    capacity = previous_elements(previous) + len(fresh)
    hnsw = previous.generation.load_hnsw(capacity=capacity)
    for item in sorted(dead):
        hnsw.mark_deleted(item)
    if fresh:
        hnsw.add_items(vectors[fresh], [new_labels[i] for i in fresh])
    hnsw.set_ef(settings.ef)
    return hnsw


def _new_graph(previous, table, new_items, vectors, model, settings):
    """A compact graph of the items ``table`` uses, and ``table`` with identical vectors
    merged into one item (the lowest label): also those an older index kept apart."""
    import numpy as np
    import pyarrow as pa

    items = sorted(set(table["vector_label"].to_pylist()))
    position = {item: i for i, item in enumerate(items)}
    matrix = np.zeros((len(items), model.dim), np.float32)
    have = np.zeros(len(items), bool)
    for i, item in enumerate(new_items):  # new chunks' vectors, also those reused
        matrix[position[item]], have[position[item]] = vectors[i], True
    old = [item for item, found in zip(items, have) if not found]
    if old:  # kept chunks: their vectors from the previous graph
        matrix[~have] = store.row_vectors(previous.generation, old)
    merged: dict[bytes, int] = {}
    same = {item: merged.setdefault(_vector_key(v), item) for item, v in zip(items, matrix)}
    distinct = [i for i, item in enumerate(items) if same[item] == item]
    hnsw = graph.new_hnsw(
        model.dim, len(distinct), M=settings.M, ef_construction=settings.ef_construction
    )
    if distinct:
        hnsw.add_items(matrix[distinct], [items[i] for i in distinct])
    hnsw.set_ef(settings.ef)
    remapped = pa.array([same[item] for item in table["vector_label"].to_pylist()], pa.int64())
    return hnsw, table.set_column(
        table.column_names.index("vector_label"), "vector_label", remapped
    )


def previous_elements(previous: _Previous) -> int:
    return int(previous.generation.manifest["hnsw"]["elements"])


def _restat(table: pa.Table, restat: dict[str, tuple[int, int]]) -> pa.Table:
    """Record the new size and mtime of documents whose content did not change."""
    import pyarrow as pa

    doc_ids = table["doc_id"].to_pylist()
    sizes = table["size"].to_pylist()
    mtimes = table["mtime_ns"].to_pylist()
    for i, doc_id in enumerate(doc_ids):
        if doc_id in restat:
            sizes[i], mtimes[i] = restat[doc_id]
    table = table.set_column(
        table.schema.get_field_index("size"), "size", pa.array(sizes, pa.int64())
    )
    return table.set_column(
        table.schema.get_field_index("mtime_ns"), "mtime_ns", pa.array(mtimes, pa.int64())
    )


def _rows_table(rows: list[_Row], labels: list[int], vector_labels: list[int]) -> pa.Table:
    import pyarrow as pa

    columns: dict[str, list[Any]] = {name: [] for name in sidecar.sidecar_schema().names}
    for label, vector_label, row in zip(labels, vector_labels, rows):
        doc, chunk = row.doc, row.chunk
        columns["label"].append(label)
        columns["vector_label"].append(vector_label)
        columns["doc_id"].append(_stored_doc_id(doc))
        columns["path"].append(stored_path(doc.path))
        columns["row_id"].append(None if doc.row_id is None else _clean(doc.row_id))
        columns["kind"].append(doc.kind)
        columns["chunk"].append(chunk.index)
        columns["n_chunks"].append(row.n_chunks)
        columns["char_start"].append(chunk.char_start)
        columns["char_end"].append(chunk.char_end)
        columns["line_start"].append(chunk.line_start)
        columns["line_end"].append(chunk.line_end)
        columns["n_tokens"].append(chunk.n_tokens)
        columns["doc_hash"].append(row.doc_hash)
        columns["chunk_hash"].append(row.chunk_hash)
        columns["size"].append(doc.size)
        columns["mtime_ns"].append(doc.mtime_ns)
        columns["encoding"].append(doc.encoding)
        columns["text"].append(_clean(chunk.text))
        columns["meta"].append(
            _clean(json.dumps(doc.meta, ensure_ascii=False, default=str)) if doc.meta else None
        )
    return pa.Table.from_pydict(columns, schema=sidecar.sidecar_schema())


def _stored_doc_id(doc: Document) -> str:
    """The doc_id column's value: the stored path, then the row part (``#row_id``) cleaned."""
    if doc.doc_id.startswith(doc.path):
        return stored_path(doc.path) + _clean(doc.doc_id[len(doc.path) :])
    return _clean(doc.doc_id)


def _real_ids(stored_path_: str, stored_doc_id: str) -> tuple[str, str]:
    """The path and doc_id that ``_rows_table`` stored."""
    path = real_path(stored_path_)
    if stored_doc_id.startswith(stored_path_):
        return path, path + stored_doc_id[len(stored_path_) :]
    return path, stored_doc_id


def _clean(text: str) -> str:
    """Parquet strings must be valid UTF-8: replace lone surrogates (e.g. from JSON escapes)."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")


def _jsonable(options: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in options.items()}
