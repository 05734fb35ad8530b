"""File names that are not UTF-8, or that hold a backslash, a tab or a newline, end to end.

A name is bytes. The index stores a name that is not UTF-8 as a file:// URL of its bytes
(documents.stored_path); every command must turn it back into the real file (real_path),
print it by the one escaping rule (documents.escape_text), and hand its exact bytes to -0.
"""

from __future__ import annotations

import ast
import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bienc_cli.cli.main import app
from tests.test_cli import unescape_tsv

runner = CliRunner()

TEXT = "Sourdough starter needs flour and water fed every day at room temperature.\n"
OTHER = "Sourdough bread needs a hot oven and a heavy pot with a lid on top.\n"


def bienc(*args, input=None):
    return runner.invoke(app, [str(a) for a in args], input=input, catch_exceptions=False)


def put(folder: Path, name: bytes, text: str) -> bytes:
    """Write ``text`` to the file named by the raw bytes ``name``; its full name, as bytes."""
    path = os.fsencode(folder) + b"/" + name
    with open(path, "wb") as fh:
        fh.write(text.encode())
    return path


def utf8(result) -> str:
    """The command's stdout, which must be valid UTF-8 whatever the names."""
    assert result.exit_code == 0, result.output
    return result.stdout_bytes.decode("utf-8")


@pytest.fixture
def copies(tmp_path, fake_encoder, monkeypatch):
    """a-keeper.txt and an exact copy under a name that is not UTF-8, indexed."""
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "docs"
    root.mkdir()
    keeper = put(root, b"a-keeper.txt", TEXT)  # first in path order: the keeper
    copy = put(root, b"copy-\xff.txt", TEXT)
    index = tmp_path / "idx"
    assert bienc("index", root, "--index", index, "-q").exit_code == 0
    return root, index, keeper, copy


def test_dedup_finds_a_non_utf8_copy_moves_it_and_undo_restores_it(copies, tmp_path):
    root, index, keeper, copy = copies
    groups = json.loads(utf8(bienc("dedup", "--index", index, "-f", "json")))
    assert len(groups) == 1  # not left out as "gone": the real file was checked
    [member] = groups[0]["members"]
    assert (
        member["doc_id"] == member["path"] == "file://" + os.fsdecode(copy).replace("\udcff", "%FF")
    )
    ids = bienc("dedup", "--index", index, "-f", "ids", "-0")
    assert ids.stdout_bytes == copy + b"\0"  # for xargs -0: the file's own bytes

    plan = tmp_path / "plan.json"
    assert bienc("dedup", "--index", index, "--plan", plan).exit_code == 0
    plan.read_text(encoding="utf-8")  # a plan is UTF-8 JSON, whatever the names
    moved = bienc("dedup", "--apply", plan, "--action", "move", "--to", tmp_path / "dups")
    assert moved.exit_code == 0, moved.output
    assert not os.path.lexists(copy) and os.path.exists(keeper)
    assert os.listdir(os.fsencode(tmp_path / "dups")) == [b"copy-\xff.txt"]
    journal = tmp_path / "plan.journal.jsonl"
    journal.read_text(encoding="utf-8")
    undone = bienc("dedup", "--undo", journal)
    assert undone.exit_code == 0 and undone.stdout.count("restored") == 1, undone.output
    with open(copy, "rb") as fh:
        assert fh.read() == TEXT.encode()


def test_dedup_of_sources_acts_on_the_real_name(copies, tmp_path):
    root, _, _, copy = copies
    result = bienc("dedup", root, "--action", "delete", "--yes", "-f", "json")
    report = json.loads(utf8(result))
    assert [f["status"] for f in report["files"]] == ["done"]
    assert not os.path.lexists(copy)


@pytest.mark.parametrize("copy_files", [False, True])
def test_cluster_organize_reaches_a_non_utf8_file(copies, tmp_path, copy_files):
    _, index, _, copy = copies
    target = tmp_path / "by-topic"
    args = ["cluster", "-i", index, "-n", "1", "--organize", target, "-q"]
    result = bienc(*args, *(["--copy"] if copy_files else []))
    assert result.exit_code == 0, result.output
    [folder] = target.iterdir()
    made = os.fsencode(folder) + b"/copy-\xff.txt"
    with open(made, "rb") as fh:
        assert fh.read() == TEXT.encode()
    assert os.path.islink(made) != copy_files
    if not copy_files:
        assert os.readlink(made) == copy


@pytest.fixture
def lookalikes(tmp_path, fake_encoder, monkeypatch):
    """bad<0xff>.txt, bad\\xff.txt (a literal backslash), and names with a tab and a newline."""
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "docs"
    root.mkdir()
    names = [b"bad\xff.txt", b"bad\\xff.txt", b"tab\there\xfe.txt", b"new\nline\xfe.txt"]
    for number, name in enumerate(names):
        put(root, name, f"{OTHER}Copy {number}.\n")
    index = tmp_path / "idx"
    assert bienc("index", root, "--index", index, "-q").exit_code == 0
    return index, names


def test_lookalike_names_print_differently_and_decode_back(lookalikes):
    index, names = lookalikes
    tsv = utf8(bienc("query", "sourdough bread", "-i", index, "-f", "tsv")).splitlines()
    assert len(tsv) == len(names) and all(len(line.split("\t")) == 3 for line in tsv)
    where = [unescape_tsv(line.split("\t")[1]).rsplit(":", 1)[0] for line in tsv]
    assert sorted(os.fsencode(os.path.basename(w)) for w in where) == sorted(names)
    paths = utf8(bienc("query", "sourdough bread", "-i", index, "-f", "paths")).splitlines()
    assert sorted(os.fsencode(os.path.basename(unescape_tsv(p))) for p in paths) == sorted(names)
    assert "docs/bad\\xff.txt" in paths and "docs/bad\\\\xff.txt" in paths
    table = bienc("query", "sourdough bread", "-i", index, "-f", "table", "-k", "4")
    assert "bad\\xff.txt" in table.stdout and "bad\\\\xff.txt" in table.stdout


def test_null_output_is_the_names_own_bytes(lookalikes, tmp_path):
    index, names = lookalikes
    result = bienc("query", "sourdough bread", "-i", index, "-0")
    assert result.exit_code == 0
    listed = result.stdout_bytes.split(b"\0")
    assert listed[-1] == b"" and sorted(listed[:-1]) == sorted(b"docs/" + n for n in names)
    assert all(os.path.exists(p) for p in listed[:-1])


def test_json_shows_a_non_utf8_name_as_its_stored_url(lookalikes, tmp_path):
    index, _ = lookalikes
    hits = json.loads(utf8(bienc("query", "sourdough bread", "-i", index, "-f", "json")))
    by_id = {h["doc_id"]: h["path"] for h in hits}
    url = "file://" + str(tmp_path / "docs" / "bad%FF.txt")
    assert by_id[url] == url  # exact, valid UTF-8, never a real name
    assert by_id[str(tmp_path / "docs" / "bad\\xff.txt")] == "docs/bad\\xff.txt"  # as it is
    cluster = json.loads(utf8(bienc("cluster", "-i", index, "-n", "1", "-f", "json")))
    assert url in {d["path"] for d in cluster["documents"]}


def test_query_path_glob_sees_the_real_name(lookalikes):
    index, _ = lookalikes
    result = bienc("query", "sourdough", "-i", index, "--path", "bad?.txt", "-0")
    assert result.stdout_bytes == b"docs/bad\xff.txt\0"


def test_there_is_one_escaping_function():
    from bienc_cli.inputs import documents as documents
    from bienc_cli.ui import cluster as ui_cluster
    from bienc_cli.ui import dedup as ui_dedup
    from bienc_cli.ui import eval as ui_eval
    from bienc_cli.ui import output as ui

    assert ui.escape_text is documents.escape_text
    assert all(m.escape_text is documents.escape_text for m in (ui_cluster, ui_dedup, ui_eval))
    package = Path(documents.__file__).parent
    escapers = [
        f"{path.name}:{node.name}"
        for path in sorted(package.rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef) and "escape" in node.name
    ]
    assert escapers == ["documents.py:escape_text", "documents.py:_escape_one"]
    sources = "".join(p.read_text() for p in package.rglob("*.py"))
    assert "backslashreplace" not in sources  # no second rule for names
