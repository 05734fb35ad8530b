"""An index of the SOURCES that lives only as long as one command: `bienc dedup` and
`bienc cluster` given SOURCE arguments read them through it."""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from bienc_cli.indexing.request import IndexRequest, RunReport
from bienc_cli.indexing.run import run_index
from bienc_cli.store import generations as store

if TYPE_CHECKING:
    from bienc_cli.indexing.request import EncoderFactory, ProgressFn


@contextlib.contextmanager
def temporary_index(
    request: IndexRequest,
    *,
    prefix: str = "bienc-",
    encoder_factory: EncoderFactory | None = None,
    progress: ProgressFn | None = None,
) -> Iterator[tuple[RunReport, store.Generation]]:
    """Index ``request``'s sources into a new temporary folder (its ``root`` is ignored) and
    yield the run's report and the generation it wrote; the folder is removed on exit,
    whatever happens, so nothing read from the generation may be used afterwards."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        request = dataclasses.replace(request, root=folder / "index", rebuild=False)
        report = run_index(request, encoder_factory=encoder_factory, progress=progress)
        yield report, store.open_index(request.root)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
