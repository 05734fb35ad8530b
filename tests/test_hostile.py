"""A corpus of hostile input through `bienc index`: no traceback, every bad item reported with
its reason, the good ones indexed, and the exit code telling "done" from "done but skipped"."""

from __future__ import annotations

import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
from typer.testing import CliRunner

from bienc_cli.cli.main import app
from bienc_cli.errors import ExitStatus
from tests.test_readers import make_pdf

runner = CliRunner()


def _hostile(root):
    """At least twenty kinds of bad input, each with the reason bienc should give."""
    root.mkdir()
    expect = {}  # name -> (substring of the reason, is it an error)

    def put(name, data, reason=None, error=False):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data if isinstance(data, bytes) else data.encode())
        if reason:
            expect[name] = (reason, error)

    put("good.md", "# Good\n\nAn ordinary document about rivers and stones.\n")
    put("binary.txt", b"\x00\x01\x02\xff" * 500, "binary")
    put("invalid-utf8.txt", b"caf\xe9 \xff\xfe na\xefve")  # indexed, with a note
    put("utf16.txt", "\ufeffUTF-16 text with a byte order mark".encode("utf-16"))  # indexed
    put("empty.txt", b"", "empty")
    put("blank.md", "   \n\t\n  ", "empty")
    put("one-long-line.txt", "word " * 400_000)  # 2 MB on one line: indexed in chunks
    put("huge.log", b"x" * (21 * 2**20), "larger than --max-file-size")
    put("/".join(f"d{i}" for i in range(60)) + "/deep.txt", "deeply nested but fine")
    put("script-only.html", "<html><script>var x = 1;</script></html>", "empty")
    put("zero-rows.parquet", b"")  # replaced below
    pq.write_table(pa.table({"text": pa.array([], pa.string())}), root / "zero-rows.parquet")
    expect["zero-rows.parquet"] = ("no rows", False)
    texts = pa.array([None, "", "fine row"], pa.string())
    pq.write_table(pa.table({"text": texts, "n": [1, 2, 3]}), root / "null-text.parquet")
    pq.write_table(pa.table({"text": pa.array([7, 8], pa.int64())}), root / "numbers.parquet")
    expect["null-text.parquet"] = ("no text in row", False)
    pq.write_table(pa.table({"label": ["x"]}), root / "no-text-column.parquet")
    expect["no-text-column.parquet"] = ("no text column", True)
    put("corrupt.parquet", b"PAR1 this is not a parquet file PAR1", "Parquet", error=True)
    put("bad-lines.jsonl", '{"text": "fine"}\n{not json\n[1, 2]\n', "invalid JSON", error=True)
    put("truncated.pdf", make_pdf(["Some text in a PDF"])[:200], "PDF", error=True)
    put("broken.csv", 'text,id\n"unterminated,1\n', None)
    os.symlink(root / "nowhere", root / "broken-link.txt")  # links found are not followed
    expect["broken-link.txt"] = ("symlink (not followed", False)
    os.symlink(root, root / "loop")
    expect["loop"] = ("symlink to a directory (not followed", False)
    os.mkfifo(root / "pipe.txt")
    expect["pipe.txt"] = ("not a regular file", False)
    bad_name = os.fsencode(str(root)) + b"/bad-\xff-name.txt"
    with open(bad_name, "wb") as fh:
        fh.write(b"text under a name that is not UTF-8")  # indexed, as grep reads it
    (root / "dir.txt").mkdir()  # a folder with a file's name
    return expect


def test_hostile_corpus(tmp_path, fake_encoder):
    corpus = tmp_path / "hostile"
    expect = _hostile(corpus)
    # 15 kinds that must be skipped with a reason, plus 9 that must be indexed or tolerated:
    # invalid UTF-8, UTF-16 with a BOM, a 2 MB single line, 60 nested folders, numbers as text,
    # a malformed CSV, a folder named like a file, rows with null text among good ones, a
    # file name that is not UTF-8.
    assert len(expect) >= 14
    result = runner.invoke(
        app,
        ["index", str(corpus), "--index", str(tmp_path / "idx"), "--json", "-q"],
        catch_exceptions=False,
    )
    assert "Traceback" not in result.output
    assert result.exit_code == ExitStatus.PARTIAL  # done, but some items could not be read
    report = json.loads(result.stdout)
    reasons = {}
    for item in report["skipped"]:
        name = os.path.relpath(item["path"], corpus)
        reasons.setdefault(name, []).append((item["reason"], item["error"]))
    for name, (reason, error) in expect.items():
        found = reasons.get(name, [])
        assert any(reason.lower() in r.lower() and e == error for r, e in found), (name, found)
    indexed = {os.path.relpath(p, corpus) for p in _indexed_paths(tmp_path / "idx")}
    for name in (
        "good.md",
        "invalid-utf8.txt",
        "utf16.txt",
        "one-long-line.txt",
        "null-text.parquet",
        os.fsdecode(b"bad-\xff-name.txt"),
    ):
        assert name in indexed
    assert any(p.endswith("deep.txt") for p in indexed)
    notes = {os.path.relpath(n["path"], corpus) for n in report["notes"]}
    assert "invalid-utf8.txt" in notes
    # the next run over the same hostile folder is just as calm, and changes nothing
    again = runner.invoke(app, ["index", "--index", str(tmp_path / "idx"), "--json", "-q"])
    assert again.exit_code == ExitStatus.PARTIAL and json.loads(again.stdout)["added"] == 0
    # followed, the links are what they are: one broken (an error), one a loop (not one)
    follow = runner.invoke(app, ["index", "-i", str(tmp_path / "idx"), "-L", "--json", "-q"])
    reasons = {
        os.path.relpath(item["path"], corpus): (item["reason"], item["error"])
        for item in json.loads(follow.stdout)["skipped"]
    }
    assert reasons["broken-link.txt"] == ("broken symlink", True)
    assert reasons["loop"] == ("symlink loop", False)


def test_names_with_newlines_through_null_separated_stdin(tmp_path, fake_encoder):
    folder = tmp_path / "docs"
    folder.mkdir()
    odd = folder / "two\nlines.txt"
    odd.write_text("a file whose name has a newline in it")
    plain = folder / "plain.txt"
    plain.write_text("a plain file")
    result = runner.invoke(
        app,
        ["index", "-", "-0", "--index", str(tmp_path / "idx"), "--json", "-q"],
        input=f"{odd}\0{plain}\0",
        catch_exceptions=False,
    )
    assert result.exit_code == 0 and json.loads(result.stdout)["added"] == 2
    assert str(odd) in _indexed_paths(tmp_path / "idx")


def _indexed_paths(root):
    from bienc_cli.inputs.documents import real_path
    from bienc_cli.store import generations as store

    paths = store.open_index(root).read_sidecar(columns=["path"])["path"].to_pylist()
    return {real_path(p) for p in paths}
