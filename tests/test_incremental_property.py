"""Property: any sequence of add, modify, delete, rename and index steps leaves an index whose
content equals a fresh build of the final folder, and whose run reports the same skips and
errors a fresh build does, with counts that add up (Hypothesis state machine, fake encoder)."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule

from bienc_cli.indexing import run as indexing
from bienc_cli.indexing.request import IndexRequest, RunReport
from bienc_cli.indexing.run import run_index
from bienc_cli.indexing.verify import verify_index
from bienc_cli.store import generations as store
from tests.conftest import FakeEncoder

WORDS = st.lists(
    st.sampled_from("alpha beta gamma delta river stone cloud fire".split()),
    min_size=1,
    max_size=60,
)
NAMES = st.sampled_from(
    [f"d{i}.txt" for i in range(8)] + ["sub/e1.md", "sub/e2.md", "t1.jsonl", "t2.jsonl"]
)
# Files that are read but hold nothing to index: empty, or text the tokenizer drops entirely.
NO_TEXT = st.sampled_from(["", "\u200b\u200b", "\u00ad"])
# Table rows: text, a line that is not JSON (a row error), a row without text, one the
# tokenizer drops entirely (no chunks). One row with text comes first, so that the table is
# in the index and is not read again while it is unchanged.
ROW = WORDS.map(lambda words: json.dumps({"text": " ".join(words)}))
ROWS = st.lists(
    st.one_of(
        ROW, st.just('{"text": broken'), st.just('{"text": ""}'), st.just('{"text": "\u200b"}')
    ),
    max_size=5,
)


def _content(root: Path) -> dict[str, tuple[str, ...]]:
    """doc_id -> its chunk texts, with their vectors checked against a fresh encoding."""
    generation = store.open_index(root)
    table = generation.read_sidecar(columns=["vector_label", "doc_id", "chunk", "text"])
    table = table.to_pylist()
    if table:  # every stored vector is the encoding of its chunk's text
        vectors = store.row_vectors(generation, [r["vector_label"] for r in table])
        assert np.allclose(vectors, FakeEncoder().encode([r["text"] for r in table]), atol=1e-5)
    content: dict[str, list[tuple[int, str]]] = {}
    for row in table:
        content.setdefault(row["doc_id"].rsplit("/docs/", 1)[1], []).append(
            (row["chunk"], row["text"])
        )
    return {doc: tuple(text for _, text in sorted(chunks)) for doc, chunks in content.items()}


def _skips(report: RunReport) -> list[tuple[str, str | None, str, bool]]:
    return [(s.path.rsplit("/docs/", 1)[1], s.row_id, s.reason, s.error) for s in report.skipped]


class IncrementalIndex(RuleBasedStateMachine):
    @initialize()
    def setup(self):
        self.tmp = Path(tempfile.mkdtemp())
        self.docs = self.tmp / "docs"
        (self.docs / "sub").mkdir(parents=True)
        self.root = self.tmp / "idx"
        self.encoder = FakeEncoder()
        indexing.load_encoder = lambda model: self.encoder  # restored in teardown
        (self.docs / "d0.txt").write_text("seed document")
        self.documents = self._index().documents

    def _index(self):
        return run_index(IndexRequest(root=self.root, sources=[str(self.docs)]))

    @rule(name=NAMES, words=WORDS)
    def write(self, name, words):  # add or modify
        (self.docs / name).write_text(" ".join(words))

    @rule(name=NAMES, text=NO_TEXT)
    def write_no_text(self, name, text):
        (self.docs / name).write_text(text)

    @rule(number=st.sampled_from([1, 2]), first=ROW, rows=ROWS)
    def write_table(self, number, first, rows):
        (self.docs / f"t{number}.jsonl").write_text("\n".join([first, *rows]) + "\n")

    @rule(name=NAMES)
    def delete(self, name):
        (self.docs / name).unlink(missing_ok=True)

    @rule(old=NAMES, new=NAMES)
    def rename(self, old, new):
        if (self.docs / old).exists() and old != new:
            (self.docs / old).rename(self.docs / new)

    @rule()
    def index_and_compare(self):
        """Changes pile up between index runs; after each run, compare with a fresh build."""
        report = self._index()
        fresh = self.tmp / "fresh"
        shutil.rmtree(fresh, ignore_errors=True)
        fresh_report = run_index(IndexRequest(root=fresh, sources=[str(self.docs)]))
        assert _content(self.root) == _content(fresh)
        # the same skips and errors every run while they persist, read again or not
        assert _skips(report) == _skips(fresh_report)
        assert report.exit_status == fresh_report.exit_status
        # counts add up: every document before the run is updated, removed or unchanged
        assert report.documents == self.documents + report.added - report.removed
        assert report.updated + report.removed + report.unchanged == self.documents
        assert report.documents == fresh_report.documents == fresh_report.added
        assert store.open_index(self.root).manifest["counts"]["documents"] == report.documents
        # one graph item per distinct vector, each held by some chunk (identical texts share)
        assert verify_index(self.root, check_model=False).ok
        self.documents = report.documents
        # and again with nothing changed: nothing is read or written, the same is reported
        again = self._index()
        assert again.generation is None and again.unchanged == report.documents
        assert _skips(again) == _skips(report) and again.exit_status == report.exit_status

    def teardown(self):
        indexing.load_encoder = _REAL_LOAD_ENCODER
        if hasattr(self, "tmp"):
            shutil.rmtree(self.tmp, ignore_errors=True)


_REAL_LOAD_ENCODER = indexing.load_encoder
IncrementalIndex.TestCase.settings = settings(
    max_examples=30, stateful_step_count=15, deadline=None
)
TestIncrementalIndex = IncrementalIndex.TestCase
