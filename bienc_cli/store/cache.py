"""Vectors encoded by a run that has not published yet (INDEX/cache/<fingerprint>/)."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from bienc_cli.store.layout import CACHE, storage_error

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)


class EmbeddingCache:
    """Vectors encoded by a run that has not published yet, keyed by chunk hash, per model.

    `bienc index` appends a shard after every block it encodes; a run killed five hours in
    leaves those shards behind, and the next run reuses them instead of encoding again. A
    run that publishes (or finds nothing to publish) clears the cache: its vectors are then
    in the generation itself. Shards are written to a temporary name and renamed, so a
    partial shard is never read; an unreadable one is logged and ignored.
    """

    def __init__(self, root: Path, fingerprint: str):
        self.dir = root / CACHE / fingerprint

    def load(self) -> dict[str, np.ndarray]:
        import numpy as np

        vectors: dict[str, np.ndarray] = {}
        for shard in sorted(self.dir.glob("*.npz")) if self.dir.is_dir() else ():
            try:
                with np.load(shard, allow_pickle=False) as data:
                    vectors.update(zip(data["keys"].tolist(), data["vectors"]))
            except Exception as exc:  # a damaged shard only costs its vectors
                log.warning("ignoring damaged embedding cache shard %s: %s", shard, exc)
        return vectors

    def append(self, keys: Sequence[str], vectors: np.ndarray) -> None:
        import numpy as np

        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".shard-", suffix=".tmp", dir=self.dir)
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, keys=np.array(keys, dtype=str), vectors=vectors)
            os.replace(tmp, self.dir / f"{time.time_ns()}-{os.getpid()}.npz")
        except OSError as exc:
            raise storage_error(self.dir.parent.parent, exc) from exc

    def clear(self) -> None:
        shutil.rmtree(self.dir.parent, ignore_errors=True)
