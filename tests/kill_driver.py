"""Runs one `bienc index` with the fake encoder, for the crash tests to SIGKILL at random moments.

    python -m tests.kill_driver INDEX_DIR SOURCE_DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

from bienc_cli import indexing
from bienc_cli.indexing import IndexRequest, run_index
from tests.conftest import FakeEncoder

if __name__ == "__main__":
    encoder = FakeEncoder()
    indexing.load_encoder = lambda model: encoder  # type: ignore[assignment]
    root, source = sys.argv[1], sys.argv[2]
    report = run_index(IndexRequest(root=Path(root), sources=[source]))
    print(report.generation)
