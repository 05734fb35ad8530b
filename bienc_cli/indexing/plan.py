"""The scan: walk the sources, compare every document with what the live generation holds
(by size and mtime, then by content hash), and decide what to add, keep, restat or drop."""

from __future__ import annotations

import dataclasses
import fnmatch
import glob
import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bienc_cli.encoding.model import ModelInfo
from bienc_cli.errors import (
    IndexCorrupt,
    UsageError,
)
from bienc_cli.indexing.model_choice import precision
from bienc_cli.indexing.request import SOURCE_OPTION_NAMES, IndexRequest, ProgressFn, RunReport
from bienc_cli.inputs.documents import Document, Note, Skipped, real_path
from bienc_cli.inputs.readers import TableOptions, cannot_open, read_file
from bienc_cli.inputs.sources import SourceOptions, discover, is_gone, may_exist
from bienc_cli.inputs.tables import is_table
from bienc_cli.store import generations as store
from bienc_cli.store import sidecar
from bienc_cli.util.paths import is_under


@dataclass
class Previous:
    """What the live generation knows, in the shapes the planner needs."""

    generation: store.Generation
    table: sidecar.Table  # kept whole: the next generation's sidecar starts from it
    file_stat: dict[str, tuple[int, int]]  # path -> (size, mtime_ns)
    doc_hash: dict[str, str]  # doc_id -> doc_hash
    doc_path: dict[str, str]  # doc_id -> path
    chunk_label: dict[str, int]  # chunk_hash -> the graph item holding that chunk's vector
    stored_id: dict[str, str]  # doc_id -> the doc_id column's value (see documents.stored_path)

    @classmethod
    def load(cls, generation: store.Generation) -> Previous:
        table = generation.read_sidecar()
        data = sidecar.columns(
            table, ["vector_label", "doc_id", "path", "size", "mtime_ns", "doc_hash", "chunk_hash"]
        )
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


def load_previous(live: store.Generation | None, rebuild: bool) -> Previous | None:
    """What the live generation holds. A rebuild reads everything again and keeps from it
    only what it cannot read now; a live generation too damaged to read has nothing to give
    (the rebuild is then how to repair it)."""
    if live is None:
        return None
    try:
        return Previous.load(live)
    except IndexCorrupt:
        if not rebuild:
            raise
        return None


@dataclass
class Plan:
    """The scan's verdict: which documents to add, which old ones to keep or drop."""

    new_docs: list[Document] = field(default_factory=list)
    restat: dict[str, tuple[int, int]] = field(default_factory=dict)  # doc_id -> new stat
    seen_docs: set[str] = field(default_factory=set)
    seen_paths: set[str] = field(default_factory=set)
    unchanged_paths: set[str] = field(default_factory=set)  # same size and mtime: not read
    # Paths that could not be examined or read (Skipped.keep): documents at or under them
    # are kept.
    unseen: dict[str, Skipped] = field(default_factory=dict)


def effective_sources(
    request: IndexRequest, manifest: dict[str, Any] | None
) -> tuple[list[str], dict[str, Any], list[str]]:
    """Roots to scan, the options to scan them with, and the remembered roots that are gone.

    Every remembered root is scanned again, so that a plain re-run sees deletions everywhere;
    options set in this run replace the remembered ones. ``--rebuild`` with sources forgets
    the old roots.
    """
    stored = manifest["sources"] if manifest else {"roots": []}
    options = remembered_options(manifest) | request.options
    given = [absolute_source(s) for s in request.sources]
    remembered = [] if (request.rebuild and given) else list(stored["roots"])
    present = existing_roots(remembered, source_options(options))
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
    return jsonable(defaults) | stored


def existing_roots(roots: Sequence[str], options: SourceOptions | None = None) -> list[str]:
    """Remembered roots that are not gone for sure (see sources.is_gone): a root that cannot
    be examined stays, so that the scan reports it and its documents are kept; documents
    under a vanished one are removed, because their files are gone."""
    options = options or SourceOptions()
    return [r for r in roots if not is_gone(r, options)]


def source_options(options: dict[str, Any]) -> SourceOptions:
    return SourceOptions(**{k: _tuple(options[k]) for k in SOURCE_OPTION_NAMES})


def absolute_source(source: str) -> str:
    expanded = os.path.expanduser(source)
    return expanded if os.path.isabs(expanded) else os.path.abspath(expanded)


def scan(
    request: IndexRequest,
    roots: list[str],
    options: dict[str, Any],
    previous: Previous | None,
    report: RunReport,
    progress: ProgressFn | None,
) -> Plan:
    parsed = source_options(options)
    table_options = _table_options(options)
    # Tables are read again, changed or not, when the columns to read them by changed.
    reread_tables = previous is not None and table_options != _table_options(
        remembered_options(previous.generation.manifest)
    )
    plan = Plan()
    files = 0
    found = discover(roots, parsed, stdin_paths=request.stdin_paths, index=str(request.root))
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


def _forget_file(plan: Plan, new_docs_before: int, restat_before: set[str]) -> None:
    """The file failed (maybe after some rows were read): index none of this run's reading
    of it."""
    for doc in plan.new_docs[new_docs_before:]:
        plan.seen_docs.discard(doc.doc_id)
    del plan.new_docs[new_docs_before:]
    for doc_id in set(plan.restat) - restat_before:
        del plan.restat[doc_id]
        plan.seen_docs.discard(doc_id)


def _unread(plan: Plan, problem: Skipped) -> Skipped:
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


def _plan_document(plan: Plan, previous: Previous | None, doc: Document) -> None:
    if doc.doc_id in plan.seen_docs:
        return  # the same document reached twice (e.g. a file given twice)
    plan.seen_docs.add(doc.doc_id)
    if previous and previous.doc_hash.get(doc.doc_id) == text_hash(doc.text):
        plan.restat[doc.doc_id] = (doc.size, doc.mtime_ns)
    else:
        plan.new_docs.append(doc)


def removed_documents(
    plan: Plan, previous: Previous | None, roots: list[str], *, rebuild: bool = False
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


def check_rebuild_keeps(
    request: IndexRequest,
    model: ModelInfo,
    plan: Plan,
    previous: Previous | None,
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
        and precision(old["model"].get("backend", "")) == precision(model.backend)
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


def explain_kept_and_gone(
    report: RunReport,
    plan: Plan,
    previous: Previous | None,
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
    return any(fnmatch.fnmatch(path, r) if glob.has_magic(r) else is_under(path, r) for r in roots)


def _real_ids(stored_path_: str, stored_doc_id: str) -> tuple[str, str]:
    """The path and doc_id that ``write.rows_columns`` stored."""
    path = real_path(stored_path_)
    if stored_doc_id.startswith(stored_path_):
        return path, path + stored_doc_id[len(stored_path_) :]
    return path, stored_doc_id


def report_remembered_skips(plan: Plan, previous: Previous | None, report: RunReport) -> None:
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


def jsonable(options: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in options.items()}


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def skips_by_file(
    report: RunReport,
    plan: Plan,
    previous: Previous | None,
    removed: set[str],
    written: set[str],
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
    held = set(written)
    if previous:
        held.update(path for doc_id, path in previous.doc_path.items() if doc_id not in removed)
    out = {}
    for path in sorted(held):
        skips = fresh.get(path) if path in read_now else remembered.get(path)
        if skips:
            out[path] = skips
    return out


def skipped_files(report: RunReport, limit: int = 10_000) -> dict[str, list[int]]:
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
