"""`bienc dedup`: what the disk still supports. The vectors compared are the index's; a
document whose file changed since it was indexed is left out of what dedup reports."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Collection, Sequence

from bienc_cli.dedup.detect import Detection, DocRecord, Pair, exact_classes, form_groups

log = logging.getLogger(__name__)


def drop_stale(
    detection: Detection, *, text_columns: Sequence[str] = (), id_column: str | None = None
) -> Detection:
    """The detection without the documents whose file no longer holds what was compared.

    The vectors are the index's: a file changed or removed since it was indexed may not be
    a duplicate of anything now, and reporting it as one would have ``-f ids | xargs rm``
    lose unique text. Every document of a pair is checked: size and mtime as indexed, else
    its text read again and hashed as indexing does (a file only touched is still in). The
    others are left out, named in ``stale``, and the groups formed again without them (a
    stale keeper's copies may still duplicate each other). ``text_columns`` and ``id_column``
    read table rows as the index did.
    """
    records = detection.records
    involved = sorted({i for p in detection.pairs for i in (p.a, p.b)})
    cache: dict[str, dict[str | None, str]] = {}
    table_options = (tuple(text_columns), id_column)
    stale = {}
    for index in involved:
        problem = disk_problem(records[index], cache, table_options)
        if problem:
            stale[index] = problem
    if not stale:
        return detection
    pairs = _pairs_without(records, detection.pairs, stale)
    groups = form_groups(records, pairs, detection.options.keep, excluded=stale)
    log.debug("%d documents changed on disk since they were indexed", len(stale))
    return dataclasses.replace(detection, groups=groups, pairs=pairs, stale=sorted(stale.items()))


def disk_problem(
    record: DocRecord,
    cache: dict[str, dict[str | None, str]],
    table_options: tuple[tuple[str, ...], str | None],
) -> str:
    """Why ``record``'s file no longer holds its text ("" when it does)."""
    try:
        st = os.stat(record.path)
    except FileNotFoundError:
        return "is gone since it was indexed"
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    if (st.st_size, st.st_mtime_ns) == (record.size, record.mtime_ns):
        return ""
    if record.path not in cache:
        cache[record.path] = _text_hashes(record.path, st, table_options)
    if cache[record.path].get(record.row_id) != record.doc_hash:
        return "changed since it was indexed"
    return ""


def _text_hashes(
    path: str, st: os.stat_result, table_options: tuple[tuple[str, ...], str | None]
) -> dict[str | None, str]:
    """The text hash of each document in the file now (by row id; None for a file)."""
    from bienc_cli.indexing.plan import text_hash
    from bienc_cli.inputs.documents import Document, FileEntry
    from bienc_cli.inputs.readers import TableOptions, read_file

    entry = FileEntry(path, st.st_size, st.st_mtime_ns, root=path)
    text_columns, id_column = table_options
    options = TableOptions(text_columns=text_columns, id_column=id_column)
    return {
        event.row_id: text_hash(event.text)
        for event in read_file(entry, options)
        if isinstance(event, Document)
    }


def _pairs_without(
    records: Sequence[DocRecord], pairs: Sequence[Pair], stale: Collection[int]
) -> list[Pair]:
    """``pairs`` with stale documents replaced by the first fresh copy of their text (what
    was compared still holds for it), or dropped when their text has none."""
    classes = exact_classes([r.doc_hash or r.doc_id for r in records]).tolist()
    fresh: dict[int, int] = {}
    for index, cls in enumerate(classes):
        if index not in stale:
            fresh.setdefault(cls, index)
    out: dict[tuple[int, int], Pair] = {}
    for pair in pairs:
        a = fresh.get(classes[pair.a]) if pair.a in stale else pair.a
        b = (
            pair.b
            if pair.b not in stale
            else (None if pair.match == "exact" else fresh.get(classes[pair.b]))
        )
        if a is None or b is None or a == b:
            continue
        a, b = min(a, b), max(a, b)
        out.setdefault((a, b), dataclasses.replace(pair, a=a, b=b))
    return list(out.values())
