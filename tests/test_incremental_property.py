"""Property: any sequence of add, modify, delete, rename and index steps leaves an index whose
content equals a fresh build of the final folder (Hypothesis state machine, fake encoder)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule

from bienc_cli import indexing, store
from bienc_cli.indexing import IndexRequest, run_index
from tests.conftest import FakeEncoder

WORDS = st.lists(
    st.sampled_from("alpha beta gamma delta river stone cloud fire".split()),
    min_size=1,
    max_size=60,
)
NAMES = st.sampled_from([f"d{i}.txt" for i in range(8)] + ["sub/e1.md", "sub/e2.md"])


def _content(root: Path) -> dict[str, tuple[str, ...]]:
    """doc_id -> its chunk texts, with their vectors checked against a fresh encoding."""
    generation = store.open_index(root)
    table = generation.read_sidecar(columns=["label", "doc_id", "chunk", "text"]).to_pylist()
    if table:  # every stored vector is the encoding of its chunk's text
        labels = [r["label"] for r in table]
        vectors = generation.load_hnsw().get_items(labels, return_type="numpy")
        assert np.allclose(vectors, FakeEncoder().encode([r["text"] for r in table]), atol=1e-5)
    content: dict[str, list[tuple[int, str]]] = {}
    for row in table:
        content.setdefault(row["doc_id"].rsplit("/docs/", 1)[1], []).append(
            (row["chunk"], row["text"])
        )
    return {doc: tuple(text for _, text in sorted(chunks)) for doc, chunks in content.items()}


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
        self._index()

    def _index(self):
        run_index(IndexRequest(root=self.root, sources=[str(self.docs)]))

    @rule(name=NAMES, words=WORDS)
    def write(self, name, words):  # add or modify
        (self.docs / name).write_text(" ".join(words))

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
        self._index()
        fresh = self.tmp / "fresh"
        shutil.rmtree(fresh, ignore_errors=True)
        run_index(IndexRequest(root=fresh, sources=[str(self.docs)]))
        assert _content(self.root) == _content(fresh)

    def teardown(self):
        indexing.load_encoder = _REAL_LOAD_ENCODER
        if hasattr(self, "tmp"):
            shutil.rmtree(self.tmp, ignore_errors=True)


_REAL_LOAD_ENCODER = indexing.load_encoder
IncrementalIndex.TestCase.settings = settings(
    max_examples=30, stateful_step_count=15, deadline=None
)
TestIncrementalIndex = IncrementalIndex.TestCase
