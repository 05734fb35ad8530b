"""`bienc verify`: check an index against its manifest, and repair it."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from bienc_cli.cli.options import IndexOption, handle_errors, not_nan
from bienc_cli.errors import ExitStatus


@handle_errors
def verify(
    index_dir: IndexOption = None,
    repair: Annotated[
        bool,
        typer.Option(
            "--repair",
            help="Fix what is inconsistent: back to the newest good generation, then re-index.",
        ),
    ] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    wait: Annotated[
        float | None,
        typer.Option(
            "--wait",
            min=0,
            callback=not_nan,
            help="With --repair: wait at most this long for another writer.",
        ),
    ] = None,
) -> None:
    """Check an index against its manifest and sidecar: checksums, labels, counts, model.

    Exit code 0 when everything holds, 4 when something does not (after --repair: when the
    repair could not make it hold).
    """
    from bienc_cli.indexing.verify import repair_index, verify_index
    from bienc_cli.store import layout
    from bienc_cli.ui.output import escape_text

    root = layout.index_path(str(index_dir) if index_dir else None)
    result = repair_index(root, wait=wait) if repair else verify_index(root)
    if json_output:
        sys.stdout.write(json.dumps(result.to_dict(), indent=2) + "\n")
    else:
        for check in result.checks:
            mark = "ok  " if check.ok else "FAIL"
            detail = ": " + escape_text(check.detail) if check.detail else ""
            sys.stdout.write(f"{mark} {check.name}{detail}\n")
        if result.repaired:
            sys.stdout.write(f"repair: {escape_text(result.repaired)}\n")
    raise typer.Exit(int(ExitStatus.OK if result.ok else ExitStatus.NO_INDEX))
