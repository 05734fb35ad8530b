"""Which folders a writer accepts as --index, and that it only ever removes its own files
(#14 items 1 and 13): a user's folder given as --index is refused untouched, a failed first
run leaves nothing behind, and old generations are recognised by name and manifest."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bienc_cli.cli.main import app
from bienc_cli.errors import ExitStatus, ModelUnavailable, UsageError
from bienc_cli.store import layout, lock

runner = CliRunner()


def bienc(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root`` with its content (None for folders and links)."""
    out: dict[str, bytes | None] = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        out[rel] = None if path.is_dir() or path.is_symlink() else path.read_bytes()
    return out


@pytest.fixture
def notes(tmp_path):
    """A user's folder of notes, with subfolders whose names start with "g"."""
    root = tmp_path / "notes"
    for sub, text in [
        ("garden", "Tomatoes need sun and water."),
        ("gardening", "Prune roses in late winter."),
        ("g000001", "A folder named like a generation."),
        ("work", "Quarterly report due on Friday."),
        ("travel", "Pack sunscreen for the beach."),
    ]:
        (root / sub).mkdir(parents=True)
        (root / sub / "note.txt").write_text(text + "\n")
    (root / "lock").write_text("my own lock notes\n")
    return root


@pytest.mark.parametrize("source", [".", "travel"])
def test_a_users_folder_as_index_is_refused_untouched(notes, fake_encoder, monkeypatch, source):
    before = snapshot(notes)
    monkeypatch.chdir(notes)
    result = bienc("index", source, "--index", ".")
    assert result.exit_code == ExitStatus.USAGE
    assert "not empty and not a bienc index" in result.stderr
    assert snapshot(notes) == before  # not even a lock file


def test_index_folder_equal_to_source_folder(tmp_path, fake_encoder):
    full = tmp_path / "t4"
    full.mkdir()
    (full / "a.txt").write_text("some text to index\n")
    result = bienc("index", full, "-i", full)
    assert result.exit_code == ExitStatus.USAGE
    assert "not a bienc index" in result.stderr and "is a bienc index" not in result.stderr
    assert sorted(os.listdir(full)) == ["a.txt"]
    empty = tmp_path / "t5"
    empty.mkdir()
    result = bienc("index", empty, "-i", empty)
    assert result.exit_code == ExitStatus.USAGE
    assert "the --index folder itself" in result.stderr
    assert os.listdir(empty) == []


def test_verify_repair_refuses_a_users_folder(notes):
    before = snapshot(notes)
    result = bienc("verify", "--repair", "-i", notes)
    assert result.exit_code == ExitStatus.USAGE
    assert snapshot(notes) == before


@pytest.mark.parametrize("index", ["x1", "a/b/c"])
def test_a_refused_first_run_creates_nothing(tmp_path, fake_encoder, monkeypatch, index):
    monkeypatch.chdir(tmp_path)
    result = bienc("index", tmp_path / "nonexistent", "-i", index)
    assert result.exit_code == ExitStatus.USAGE
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("existing", [False, True])
def test_a_first_run_that_fails_under_the_lock_leaves_nothing(
    tmp_path, corpus, monkeypatch, existing
):
    """Failures found only once the lock is held (here: the model cannot be loaded)."""

    def unavailable(model):
        raise ModelUnavailable("no model here")

    monkeypatch.setattr("bienc_cli.indexing.run.load_encoder", unavailable)
    index = tmp_path / "new" / "idx"
    if existing:
        index.mkdir(parents=True)
    result = bienc("index", corpus, "-i", index, "--backend", "sentence-transformers")
    assert result.exit_code == ExitStatus.MODEL_UNAVAILABLE
    if existing:
        assert os.listdir(index) == []  # the folder was the user's: it stays, empty
    else:
        assert not (tmp_path / "new").exists()


def test_a_failed_run_on_an_existing_index_keeps_its_lock(tmp_path, corpus, fake_encoder):
    index = tmp_path / "idx"
    assert bienc("index", corpus, "-i", index).exit_code == 0
    with pytest.raises(RuntimeError), lock.write_lock(index, wait=0):
        raise RuntimeError("boom")
    assert (index / layout.LOCK).exists() and layout.is_bienc_index(str(index))


def test_leftovers_of_a_killed_first_run_are_reusable(tmp_path, corpus, fake_encoder):
    index = tmp_path / "idx"
    (index / ".tmp-g000001-k3j_x9").mkdir(parents=True)
    (index / ".tmp-g000001-k3j_x9" / layout.VECTORS).write_bytes(b"partial")
    (index / layout.CACHE).mkdir()
    (index / layout.LOCK).write_text("4242\n")
    result = bienc("index", corpus, "-i", index)
    assert result.exit_code == 0, result.stderr
    assert sorted(os.listdir(index)) == ["CURRENT", "g000001", "lock"]


@pytest.mark.parametrize(
    "names",
    [
        {"lock": "my grocery list\n"},  # a user's file named lock
        {"lock": "123\n", "notes.txt": "x"},  # a lock beside a user's file
        {"models": None},  # neither a lock nor an export: bienc did not start here
        {"lock": None},  # a folder named lock
    ],
)
def test_only_bienc_leftovers_make_a_folder_an_index(tmp_path, names):
    root = tmp_path / "folder"
    root.mkdir()
    for name, text in names.items():
        if text is None:
            (root / name).mkdir()
        else:
            (root / name).write_text(text)
    before = snapshot(root)
    with pytest.raises(UsageError, match="not a bienc index"):
        layout.check_index_folder(root)
    with pytest.raises(UsageError), lock.write_lock(root, wait=0):
        pass
    assert snapshot(root) == before


def test_a_folder_holding_only_an_export_is_accepted(tmp_path, corpus, fake_encoder):
    """An ONNX export copied in ahead of the first run (to skip exporting again)."""
    index = tmp_path / "idx"
    (index / layout.MODELS / "abc").mkdir(parents=True)
    (index / layout.MODELS / "abc" / "bienc_onnx.json").write_text("{}")
    layout.check_index_folder(index)
    (index / layout.MODELS / "abc" / "bienc_onnx.json").unlink()
    with pytest.raises(UsageError):
        layout.check_index_folder(index)


def test_the_writer_removes_only_its_own_generations(tmp_path, corpus, fake_encoder):
    """Things in an index folder that look like a writer's but are not: folders named like a
    generation without a bienc manifest, other g-names, links named like a temporary
    folder. Only the superseded generations and the real temporary leftovers go."""
    index = tmp_path / "idx"
    assert bienc("index", corpus, "-i", index).exit_code == 0
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("precious")
    planted = {
        "garden/plan.txt": "beans",
        "g000050/notes.txt": "named like a generation, no manifest",
        "g12/a.txt": "short name",
        "g000051x/a.txt": "longer name",
    }
    for rel, text in planted.items():
        (index / rel).parent.mkdir(parents=True, exist_ok=True)
        (index / rel).write_text(text)
    (index / ".tmp-g000060-abc").symlink_to(outside)
    leftover = index / ".tmp-g000061-zz9"
    leftover.mkdir()
    (corpus / "new.txt").write_text("Owls hunt mice at night.\n")
    assert bienc("index", "-i", index).exit_code == 0
    (corpus / "newer.txt").write_text("Bees make honey from nectar.\n")
    assert bienc("index", "-i", index).exit_code == 0
    for rel, text in planted.items():
        assert (index / rel).read_text() == text
    assert (outside / "keep.txt").read_text() == "precious"
    assert (index / ".tmp-g000060-abc").is_symlink()
    assert not leftover.exists()
    # numbered past the lookalike, the previous generation kept, the first one removed
    assert (index / layout.CURRENT).read_text().strip() == "g000052"
    assert [p.name for p in layout.generation_dirs(index)] == ["g000052", "g000051"]
    assert not (index / "g000001").exists()


@pytest.mark.parametrize("command", ["index", "query", "info", "verify", "dedup", "cluster"])
def test_an_index_path_that_is_not_utf8_is_refused_creating_nothing(
    tmp_path, corpus, fake_encoder, monkeypatch, command
):
    # ONNX Runtime and hnswlib open an index's files by a str name that must be UTF-8.
    monkeypatch.chdir(tmp_path)
    name = os.fsdecode(b"x\xffidx")
    args = {"index": [str(corpus)], "query": ["cats"]}.get(command, [])
    result = bienc(command, *args, "--index", name)
    assert result.exit_code == ExitStatus.USAGE, result.output
    assert "--index x\\xffidx: the folder's path is not valid UTF-8" in result.stderr
    assert os.listdir(tmp_path) == [corpus.name] or not os.path.lexists(tmp_path / name)
