"""`bienc info`: describe an index."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from bienc_cli.cli.options import IndexOption, handle_errors


@handle_errors
def info(
    index_dir: IndexOption = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    no_stale: Annotated[
        bool, typer.Option("--no-stale", help="Skip the check of which sources changed (faster).")
    ] = False,
) -> None:
    """Describe an index: model, counts, size, dates, and which sources changed since."""
    from bienc_cli.indexing.info import index_info
    from bienc_cli.store import layout
    from bienc_cli.ui import output as ui

    data = index_info(layout.index_path(str(index_dir) if index_dir else None), stale=not no_stale)
    if json_output:
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
    else:
        ui.write_info(data, sys.stdout)
