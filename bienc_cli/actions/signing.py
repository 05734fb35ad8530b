"""The per-user key that signs plans and journals, and the signatures made with it.

A plan's roots are bienc's, not the plan file's: whoever can edit a plan but cannot read
this user's key cannot make bienc act outside the roots it recorded.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import secrets
import uuid
from pathlib import Path
from typing import Any

from bienc_cli.actions.fs import sync_folder
from bienc_cli.errors import StorageError, UsageError

KEY_NAME = "dedup.key"


def key_path() -> Path:
    """The user's signing key: ``$XDG_STATE_HOME/bienc/dedup.key`` (~/.local/state/...)."""
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "state"
    )
    return Path(state) / "bienc" / KEY_NAME


def signing_key(*, create: bool) -> bytes:
    """The secret that signs this user's plans and journals, made on first use (0600).

    Whoever can edit a plan but cannot read this file cannot make bienc act outside the roots
    it recorded. FileNotFoundError when there is none and ``create`` is false.
    """
    path = key_path()
    try:
        return _read_key(path)
    except FileNotFoundError:
        if not create:
            raise
    tmp = path.with_name(f".{KEY_NAME}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(secrets.token_hex(32) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)  # unlike a rename, never replaces a key already there
        except FileExistsError:
            pass  # another bienc made one first: use it
        except OSError:  # a file system without hard links: create the name itself
            _write_new(path, tmp.read_bytes())
        sync_folder(path.parent)
    except OSError as exc:
        raise StorageError(f"cannot write the signing key {path}: {exc.strerror}") from exc
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
    return _read_key(path)


def _write_new(path: Path, data: bytes) -> None:
    with contextlib.suppress(FileExistsError):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())


def _read_key(path: Path) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        raise
    except OSError as exc:  # a link (O_NOFOLLOW), unreadable...
        raise UsageError(f"cannot read the signing key {path}: {exc.strerror}") from exc
    with os.fdopen(fd, encoding="ascii", errors="replace") as fh:
        st = os.fstat(fh.fileno())
        text = fh.read(1024).strip()
    if st.st_uid != os.geteuid() or st.st_mode & 0o077:
        raise UsageError(
            f"the signing key {path} must belong to you and be private: chmod 600 {path}"
        )
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) < 16:
        raise UsageError(
            f"the signing key {path} is damaged: remove it (plans made with it must be made again)"
        )
    return key


def mac(key: bytes, *fields: Any) -> str:
    """HMAC-SHA256 of ``fields`` (JSON, ASCII-escaped so odd file names sign too)."""
    message = json.dumps(fields, ensure_ascii=True, sort_keys=True, separators=(",", ":"))
    return hmac.new(key, message.encode("ascii"), hashlib.sha256).hexdigest()[:32]
