"""`bienc` with the fake encoder, for tests that must run the CLI in another process (for
example as an unprivileged user, so that file permissions hold even when the tests run as root).

    python -m tests.fake_cli index SOURCE --index IDX --json
"""

from __future__ import annotations

from bienc_cli.cli import main as cli
from bienc_cli.indexing import run as indexing
from bienc_cli.query import search as query
from tests.conftest import FakeEncoder

if __name__ == "__main__":
    encoder = FakeEncoder()
    indexing.load_encoder = query.load_encoder = lambda model: encoder  # type: ignore[assignment]
    cli.main()
