"""manifest.json: written last into a generation, it records everything hnswlib does not
(space, dim, ef), the model, the counts, the sources, and the checksums of the other files."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bienc_cli import __version__
from bienc_cli.errors import IncompatibleIndex, IndexCorrupt
from bienc_cli.store.layout import FORMAT, FORMAT_VERSION


def check_format(root: Path, manifest: dict[str, Any]) -> None:
    if manifest.get("format") != FORMAT:
        raise IndexCorrupt(f"{root} does not hold a bienc index")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise IncompatibleIndex(
            f"index at {root} uses format version {version}; this bienc (v{__version__}) reads "
            f"version {FORMAT_VERSION}: rebuild it with `bienc index --rebuild`"
        )


def checksums(folder: Path, names: Sequence[str]) -> dict[str, dict[str, Any]]:
    out = {}
    for name in names:
        digest = hashlib.sha256()
        with open(folder / name, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        out[name] = {"bytes": (folder / name).stat().st_size, "sha256": digest.hexdigest()}
    return out
