"""Environment faults for real: a full disk and a read-only file system under the index.

Uses a small tmpfs mounted for the test (root on Linux); where mounting is not allowed the
tests are skipped, and the injected-error tests in test_cli.py and test_store.py still run.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from typer.testing import CliRunner

from bienc_cli.cli.main import app
from bienc_cli.errors import ExitStatus
from bienc_cli.indexing.verify import verify_index
from bienc_cli.store import generations as store

runner = CliRunner()


@pytest.fixture
def small_fs(tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def _bienc(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def _fill(folder, leave):
    """Fill the file system but ``leave`` bytes."""
    stat = os.statvfs(folder)
    free = stat.f_bavail * stat.f_frsize
    with open(folder / "filler", "wb") as fh:
        fh.write(b"\0" * max(0, free - leave))


def test_disk_full_for_real_keeps_the_previous_index(small_fs, corpus, fake_encoder):
    root = small_fs / "idx"
    assert _bienc("index", corpus, "--index", root, "-q").exit_code == 0
    for i in range(40):
        (corpus / f"more{i}.txt").write_text(
            f"another document number {i} " + "filler words " * 300
        )
    _fill(small_fs, leave=16 * 1024)
    result = _bienc("index", corpus, "--index", root)
    assert result.exit_code == ExitStatus.IO_ERROR, result.output
    assert "disk is full" in result.stderr and "Traceback" not in result.output
    assert store.open_index(root).manifest["generation"] == 1
    assert verify_index(root).ok
    assert _bienc("query", "cats", "--index", root).exit_code == 0
    (small_fs / "filler").unlink()
    result = _bienc("index", corpus, "--index", root, "--json", "-q")
    assert result.exit_code == 0 and json.loads(result.stdout)["added"] == 40
    assert not [p for p in root.iterdir() if p.name.startswith(".")]


def test_read_only_file_system(small_fs, corpus, fake_encoder):
    root = small_fs / "idx"
    assert _bienc("index", corpus, "--index", root, "-q").exit_code == 0
    (corpus / "new.txt").write_text("a new document about lighthouses")
    subprocess.run(["mount", "-o", "remount,ro", str(small_fs)], check=True)
    try:
        result = _bienc("index", corpus, "--index", root)
        assert result.exit_code == ExitStatus.IO_ERROR, result.output
        assert "read-only" in result.stderr and "Traceback" not in result.output
        assert _bienc("query", "cats", "--index", root).exit_code == 0  # reading still works
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(small_fs)], check=True)
    assert store.open_index(root).manifest["generation"] == 1
