"""An ONNX export on disk: the files it holds, its metadata, and writing it atomically.

An export folder holds ``model.onnx`` (the graph), ``model.onnx.data`` (the weights),
``tokenizer.json`` and ``bienc_onnx.json`` (how to pool and normalise, and where it came from).
``export`` and ``quantize`` write one, ``runtime`` reads one.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

FORMAT_VERSION = 1
METADATA_FILE = "bienc_onnx.json"
MODEL_FILE = "model.onnx"
DATA_FILE = MODEL_FILE + ".data"  # the weights, as ONNX external data
TOKENIZER_FILE = "tokenizer.json"
EXPORT_FILES = (METADATA_FILE, MODEL_FILE, DATA_FILE, TOKENIZER_FILE)


class OnnxFolderError(Exception):
    """An ONNX folder is missing a file or was written by another format version; export again."""


def missing_files(folder: str | Path) -> list[str]:
    """The export's files that ``folder`` lacks."""
    return [name for name in EXPORT_FILES if not os.path.isfile(os.path.join(folder, name))]


def is_onnx_export(folder: str | Path) -> bool:
    """Whether ``folder`` holds a complete export (export_model writes it atomically)."""
    return not missing_files(folder)


def read_metadata(folder: str) -> dict[str, Any]:
    """``bienc_onnx.json`` of a complete export of this format version, or OnnxFolderError."""
    missing = missing_files(folder)
    if missing:
        raise OnnxFolderError(
            f"{folder} is not a complete bienc ONNX export "
            f"(missing {', '.join(missing)}); export the model again"
        )
    path = os.path.join(folder, METADATA_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            meta = json.load(f)
    except ValueError as exc:
        raise OnnxFolderError(f"{path} is damaged ({exc}); export again") from exc
    if meta.get("format_version") != FORMAT_VERSION:
        raise OnnxFolderError(
            f"{folder} was written by ONNX export format "
            f"{meta.get('format_version')}, this bienc reads "
            f"{FORMAT_VERSION}; export the model again"
        )
    return meta


def write_metadata(folder: str, metadata: dict) -> None:
    with open(os.path.join(folder, METADATA_FILE), "w", encoding="utf-8") as f:
        json.dump(metadata, f, indent=2)
        f.write("\n")


def make_shareable(path: str) -> None:
    """Give a file the umask's usual permissions (onnx writes its weights 0600)."""
    os.chmod(path, 0o666 & ~_umask())


@contextlib.contextmanager
def staged(out_dir: str) -> Iterator[str]:
    """A new folder beside ``out_dir`` that replaces it if the block succeeds.

    A crash or an error leaves ``out_dir`` as it was (a hard kill leaves the ``.tmp-``
    folder, which the index's next writer removes).
    """
    parent = os.path.dirname(os.path.abspath(out_dir))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.tmp-", dir=parent)
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it 0700; the export is an ordinary folder
    try:
        yield tmp
        replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def replace_dir(new: str, target: str) -> None:
    """Move folder ``new`` to ``target``, replacing an existing one (rename aside, then delete)."""
    if not os.path.exists(target):
        os.replace(new, target)
        return
    old = tempfile.mkdtemp(prefix=f".{os.path.basename(target)}.old-", dir=os.path.dirname(target))
    previous = os.path.join(old, "previous")
    os.replace(target, previous)
    try:
        os.replace(new, target)
    except BaseException:
        os.replace(previous, target)  # put the old export back rather than leave none
        raise
    shutil.rmtree(old, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
