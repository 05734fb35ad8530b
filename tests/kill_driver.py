"""Runs one `bienc index` with the fake encoder, for the crash tests to kill.

    python -m tests.kill_driver INDEX_DIR SOURCE_DIR [STAGE]

With STAGE, the process dies (os._exit, as abruptly as SIGKILL) at that point of writing a
generation, leaving whatever was half-written behind:
  vectors   after vectors.hnsw is saved, with the file cut to half its length
  sidecar   after chunks.parquet is written, cut to half
  lookup    after lookup.sqlite is written, cut to half
  manifest  after the manifest is written, before the folder is renamed into place
  renamed   after the rename, before CURRENT is replaced
  published after CURRENT is replaced, before old generations are removed
  cache     while saving the first block of vectors to the embedding cache
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from bienc_cli.indexing import run as indexing
from bienc_cli.indexing.request import IndexRequest
from bienc_cli.indexing.run import run_index
from bienc_cli.store import cache, layout
from bienc_cli.store import generations as store
from tests.conftest import FakeEncoder


def _cut_and_die(path: Path) -> None:
    size = path.stat().st_size
    with open(path, "r+b") as fh:
        fh.truncate(size // 2)
    os._exit(137)


def _install(stage: str) -> None:
    checksums, rename, publish = store.checksums, os.rename, store.publish
    remove_old, append = store._remove_old_generations, cache.EmbeddingCache.append

    def fake_checksums(folder, names):
        target = {"vectors": layout.VECTORS, "sidecar": layout.SIDECAR, "lookup": layout.LOOKUP}
        if stage in target:
            _cut_and_die(folder / target[stage])
        return checksums(folder, names)

    def fake_rename(src, dst, *args, **kwargs):
        if stage == "manifest" and Path(src).name.startswith(".tmp-g"):
            os._exit(137)
        rename(src, dst, *args, **kwargs)
        if stage == "renamed" and Path(dst).name.startswith("g"):
            os._exit(137)

    def fake_remove_old(root, keep):
        if stage == "published":
            os._exit(137)
        remove_old(root, keep)

    def fake_append(self, keys, vectors):
        append(self, keys[: len(keys) // 2], vectors[: len(keys) // 2])
        if stage == "cache":
            os._exit(137)
        append(self, keys[len(keys) // 2 :], vectors[len(keys) // 2 :])

    store.checksums = fake_checksums
    store.os.rename = fake_rename
    store.publish = publish
    store._remove_old_generations = fake_remove_old
    cache.EmbeddingCache.append = fake_append


if __name__ == "__main__":
    encoder = FakeEncoder()
    indexing.load_encoder = lambda model: encoder  # type: ignore[assignment]
    root, source = sys.argv[1], sys.argv[2]
    if len(sys.argv) > 3:
        _install(sys.argv[3])
    report = run_index(IndexRequest(root=Path(root), sources=[source]))
    print(report.generation)
