"""Shared fixtures: a deterministic fake encoder for fast tests, the real model for slow ones."""

from __future__ import annotations

import os
import re
import shutil
import zlib
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parent.parent
SAMPLE_CORPUS = REPO / "sample_corpus"
SHARED_DATA = REPO.parent / "shared" / "data"


class FakeEncoder:
    """Hashed bag of words -> unit vector. Same words, same vector; shared words, closer vectors.

    Uses zlib.crc32 (stable across processes), never the salted built-in hash().
    """

    def __init__(self, dim: int = 384):
        self.dim = dim
        self.max_seq_length = 256
        self.calls = 0
        self.encoded = 0

    def encode(self, texts, *, batch_size=32, progress=None):
        self.calls += 1
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                h = zlib.crc32(word.encode())
                out[i, h % self.dim] += 1.0 if (h >> 16) & 1 else -1.0
            norm = np.linalg.norm(out[i])
            if norm == 0:
                out[i, 0], norm = 1.0, 1.0
            out[i] /= norm
        self.encoded += len(texts)
        if progress:
            progress(len(texts))
        return out


@pytest.fixture(autouse=True)
def _no_exit_without_teardown(monkeypatch):
    """`bienc query` run through cli.main() leaves with os._exit, which would end pytest
    itself (with status 0, the remaining tests unrun): in tests it raises SystemExit."""

    def leave(code):
        raise SystemExit(code)

    monkeypatch.setattr("bienc_cli.cli.main._leave", leave)


@pytest.fixture(autouse=True)
def _private_state(tmp_path_factory, monkeypatch):
    """bienc's per-user state (the key that signs dedup plans) in a fresh folder per test,
    never in the home of whoever runs the tests; subprocesses inherit it."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("state")))


@pytest.fixture
def fake_encoder(monkeypatch):
    """Patch bienc to use the fake encoder everywhere; yields it to count calls."""
    encoder = FakeEncoder()

    def factory(model):
        return encoder

    monkeypatch.setattr("bienc_cli.indexing.run.load_encoder", factory)
    monkeypatch.setattr("bienc_cli.query.search.load_encoder", factory)
    return encoder


@pytest.fixture
def corpus(tmp_path):
    """A small folder of distinct documents to index."""
    root = tmp_path / "docs"
    (root / "sub").mkdir(parents=True)
    (root / "cats.md").write_text("# Cats\n\nCats purr and sleep most of the day in the sun.\n")
    (root / "dogs.txt").write_text("Dogs bark at the postman and love long walks in the park.\n")
    (root / "sub" / "rockets.txt").write_text(
        "Rockets burn fuel to reach orbit around the earth.\n"
    )
    (root / "sub" / "bread.md").write_text(
        "Bread dough needs flour, water, salt and yeast to rise.\n"
    )
    return root


@pytest.fixture
def sample_copy(tmp_path):
    """A private copy of sample_corpus/ that tests may change."""
    target = tmp_path / "sample_corpus"
    shutil.copytree(SAMPLE_CORPUS, target)
    return target


def make_cats_unreadable(monkeypatch):
    """Make `cats.md` unreadable to the indexer from now on: opening it fails with EACCES, as
    after `chmod 000` for a user who is not root (tests run as root, so chmod cannot)."""
    from bienc_cli.inputs import readers as readers

    def failing_open(path, *args, **kwargs):
        if os.fspath(path).endswith("cats.md"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return open(path, *args, **kwargs)

    monkeypatch.setattr(readers, "open", failing_open, raising=False)


def make_folder_unreadable(monkeypatch, folder):
    """Make ``folder`` what `chmod 000` makes it for a user who is not root, from now on
    (tests run as root, so chmod cannot): it cannot be listed, and nothing under it can be
    examined or opened; the folder itself can still be examined from its parent."""
    from bienc_cli.inputs import ignore as ignore
    from bienc_cli.inputs import readers as readers

    folder = os.fspath(folder)
    below = folder.rstrip(os.sep) + os.sep

    def guarded(real, *, itself):
        def call(path=".", *args, **kwargs):
            name = path if isinstance(path, str) else None  # not a descriptor, not bytes
            if name is not None and (name.startswith(below) or (itself and name == folder)):
                raise PermissionError(13, "Permission denied", name)
            return real(path, *args, **kwargs)

        return call

    monkeypatch.setattr(os, "scandir", guarded(os.scandir, itself=True))
    monkeypatch.setattr(os, "stat", guarded(os.stat, itself=False))
    monkeypatch.setattr(os, "lstat", guarded(os.lstat, itself=False))
    monkeypatch.setattr(readers, "open", guarded(open, itself=False), raising=False)
    monkeypatch.setattr(ignore, "open", guarded(open, itself=False), raising=False)  # ignore files


@pytest.fixture
def unreadable_cats(monkeypatch):
    """`cats.md` unreadable to the indexer for the whole test."""
    make_cats_unreadable(monkeypatch)
