"""Readers: text decoding, binary detection, HTML, PDF and tables, and never raising."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bienc_cli.inputs import readers as readers
from bienc_cli.inputs.documents import Document, FileEntry, Note, Skipped
from bienc_cli.inputs.readers import TableOptions, html_to_text, is_table, kind_of, read_file


def entry(path: Path) -> FileEntry:
    st_ = os.stat(path)
    return FileEntry(str(path), st_.st_size, st_.st_mtime_ns, str(path.parent))


def read(path: Path, **table) -> list[Document | Skipped | Note]:
    return list(read_file(entry(path), TableOptions(**table)))


def read_one(path: Path, data: bytes | str) -> Document | Skipped:
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    (item,) = [i for i in read(path) if not isinstance(i, Note)]
    return item


def docs(items) -> list[Document]:
    return [i for i in items if isinstance(i, Document)]


def skips(items) -> list[Skipped]:
    return [i for i in items if isinstance(i, Skipped)]


# -- text files --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("a.md", "markdown"),
        ("a.markdown", "markdown"),
        ("a.rst", "rst"),
        ("a.txt", "text"),
        ("README", "text"),
        ("a.py", "code"),
        ("a.RS", "code"),
        ("a.yaml", "code"),
        ("Makefile", "code"),
        ("a.htm", "html"),
        ("a.weird", "text"),  # unknown but textual
    ],
)
def test_kinds(tmp_path, name, kind):
    doc = read_one(tmp_path / name, "hello there\n")
    assert isinstance(doc, Document)
    assert (doc.kind, doc.encoding) == (kind, "utf-8")


def test_document_fields(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("one\r\ntwo\rthree\n")
    (doc,) = read(path)
    e = entry(path)
    assert doc == Document(
        doc_id=e.path,
        path=e.path,
        text="one\ntwo\nthree\n",
        kind="text",
        size=e.size,
        mtime_ns=e.mtime_ns,
        encoding="utf-8",
    )


def test_binary_even_with_text_extension(tmp_path):
    assert read_one(tmp_path / "a.txt", b"looks\x00binary") == Skipped(
        str(tmp_path / "a.txt"), "binary file", error=False
    )


def test_binary_unknown_extension(tmp_path):
    item = read_one(tmp_path / "a.bin", bytes(range(1, 32)) * 10)  # no NUL, all controls
    assert item == Skipped(str(tmp_path / "a.bin"), "binary file")


@pytest.mark.parametrize(
    ("codec", "encoding"),
    [
        ("utf-16", "utf-16"),
        ("utf-16-be", "utf-16"),
        ("utf-32", "utf-32"),
        ("utf-8-sig", "utf-8-sig"),
    ],
)
def test_bom_means_text(tmp_path, codec, encoding):
    data = "Grüße\r\nnaïve".encode(codec)
    if codec == "utf-16-be":
        data = b"\xfe\xff" + data
    doc = read_one(tmp_path / "a.txt", data)
    assert isinstance(doc, Document)
    assert (doc.text, doc.encoding) == ("Grüße\nnaïve", encoding)


def test_invalid_utf8_falls_back_to_cp1252(tmp_path):
    (tmp_path / "a.txt").write_bytes(b"caf\xe9 costs \x80 5")
    note, doc = read(tmp_path / "a.txt")
    assert note == Note(str(tmp_path / "a.txt"), "not valid UTF-8; decoded as cp1252")
    assert (doc.text, doc.encoding) == ("café costs € 5", "cp1252")


def test_invalid_cp1252_falls_back_to_latin1(tmp_path):
    (tmp_path / "a.txt").write_bytes(b"caf\xe9 \x81")  # 0x81 is undefined in cp1252
    note, doc = read(tmp_path / "a.txt")
    assert note.message == "not valid UTF-8; decoded as latin-1"
    assert (doc.text, doc.encoding) == ("café \x81", "latin-1")


@pytest.mark.parametrize("data", [b"", b"  \n\t\r\n", "\n".encode("utf-16")])
def test_empty(tmp_path, data):
    assert read_one(tmp_path / "a.txt", data) == Skipped(str(tmp_path / "a.txt"), "empty")


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.binary(max_size=2000))
def test_any_bytes_give_one_document_or_one_skip(tmp_path, data):
    path = tmp_path / "any.txt"
    path.write_bytes(data)
    items = read(path)
    outcomes = [i for i in items if not isinstance(i, Note)]
    assert len(outcomes) == 1 and isinstance(outcomes[0], (Document, Skipped))
    assert len(items) - len(outcomes) <= 1


# -- errors while reading ----------------------------------------------------------------------


def test_unreadable_file(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root reads files whatever their mode; see test_unreadable_file_patched")
    path = tmp_path / "secret.txt"
    path.write_text("hidden")
    path.chmod(0)
    try:
        assert read(path) == [Skipped(str(path), "permission denied", error=True)]
    finally:
        path.chmod(0o644)


def test_unreadable_file_patched(tmp_path, monkeypatch):
    path = tmp_path / "secret.txt"
    path.write_text("hidden")
    e = entry(path)

    def refuse(file, *args, **kwargs):
        raise PermissionError(13, "Permission denied", file)

    monkeypatch.setattr(readers, "open", refuse, raising=False)  # shadows the builtin there
    assert list(read_file(e)) == [Skipped(str(path), "permission denied", error=True)]


def test_vanished_file(tmp_path):
    path = tmp_path / "gone.txt"
    path.write_text("soon gone")
    e = entry(path)
    path.unlink()
    assert list(read_file(e)) == [Skipped(str(path), "vanished while reading", error=True)]


def test_changed_while_reading(tmp_path, monkeypatch):
    path = tmp_path / "a.txt"
    path.write_text("text")
    monkeypatch.setattr(readers, "_changed", lambda before, after: True)
    assert read(path) == [Skipped(str(path), "changed while reading", error=True)]


def test_directory_entry_does_not_raise(tmp_path):
    (item,) = list(read_file(FileEntry(str(tmp_path), 0, 0, str(tmp_path))))
    assert item == Skipped(str(tmp_path), "is a directory", error=True)


# -- HTML --------------------------------------------------------------------------------------

PAGE = """<!DOCTYPE html>
<html><head><title>The  Title</title>
<style>body { color: red }</style><script>var hidden = "no";</script>
<meta charset="utf-8"></head>
<body><noscript>enable js</noscript><template><p>tmpl</p></template>
<h1>Fish &amp; Chips</h1><p>Caf&eacute;   prices:
  &lt;cheap&gt;&nbsp;today</p><div>one<br>two</div>


<ul><li>first</li><li>second</li></ul>
<table><tr><td>a</td><td>b</td></tr></table>
<script>document.write("x")</script></body></html>"""


def test_html_visible_text(tmp_path):
    doc = read_one(tmp_path / "page.html", PAGE)
    assert doc.kind == "html"
    assert doc.text == (
        "The Title\n\nFish & Chips\n\nCafé prices: <cheap> today\n\none\ntwo\n\n"
        "first\nsecond\n\na b"
    )


def test_html_head_left_open():
    assert html_to_text("<head><title>T</title><body><p>Body text") == "T\n\nBody text"


def test_html_meta_charset_when_not_utf8(tmp_path):
    data = '<meta charset="iso-8859-7"><p>Καλημέρα</p>'.encode("iso-8859-7")
    path = _write(tmp_path / "greek.html", data)
    fields = {"text": "Καλημέρα", "kind": "html", "encoding": "iso8859-7"}
    assert read(path) == [Document(**_doc_fields(path), **fields)]  # declared: no Note


def test_html_only_script_is_empty(tmp_path):
    item = read_one(tmp_path / "a.html", "<script>x()</script>")
    assert item == Skipped(str(tmp_path / "a.html"), "empty")


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _doc_fields(path: Path) -> dict:
    e = entry(path)
    return {"doc_id": e.path, "path": e.path, "size": e.size, "mtime_ns": e.mtime_ns}


# -- PDF ---------------------------------------------------------------------------------------


def make_pdf(pages: list[str | None], xref_shift: int = 0) -> bytes:
    """A minimal valid PDF, one page per entry: a string is drawn as text, None draws a box."""
    objects: dict[int, bytes] = {}
    font = 3 + 2 * len(pages)
    kids = " ".join(f"{3 + 2 * i} 0 R" for i in range(len(pages)))
    objects[1] = b"<< /Type /Catalog /Pages 2 0 R >>"
    objects[2] = f"<< /Type /Pages /Kids [{kids}] /Count {len(pages)} >>".encode()
    for i, text in enumerate(pages):
        page, content = 3 + 2 * i, 4 + 2 * i
        objects[page] = (
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {content} 0 R "
            f"/Resources << /Font << /F1 {font} 0 R >> >> >>"
        ).encode()
        ops = f"BT /F1 18 Tf 72 700 Td ({text}) Tj ET" if text is not None else "0 0 99 99 re f"
        objects[content] = b"<< /Length %d >>\nstream\n%s\nendstream" % (len(ops), ops.encode())
    objects[font] = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"
    out = bytearray(b"%PDF-1.4\n")
    offsets = {}
    for number, body in sorted(objects.items()):
        offsets[number] = len(out)
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for number in sorted(objects):
        out += b"%010d 00000 n \n" % (offsets[number] + xref_shift)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\n" % (len(objects) + 1)
    out += b"startxref\n%d\n%%%%EOF\n" % xref
    return bytes(out)


def test_pdf_text_layer(tmp_path):
    doc = read_one(tmp_path / "a.pdf", make_pdf(["Hello PDF world", "Second page"]))
    assert (doc.kind, doc.text, doc.encoding) == ("pdf", "Hello PDF world\n\f\nSecond page", None)


def test_pdf_without_text_layer(tmp_path):
    item = read_one(tmp_path / "scan.pdf", make_pdf([None, None]))
    assert item == Skipped(str(tmp_path / "scan.pdf"), "PDF has no text layer (scanned?)")


def test_truncated_pdf(tmp_path):
    data = make_pdf(["Hello PDF world"])
    item = read_one(tmp_path / "cut.pdf", data[: len(data) // 2])
    assert item.error and item.reason.startswith("unreadable PDF: ")


def test_pdf_warnings_stay_off_stderr(tmp_path, capfd):
    logging.getLogger("pypdf").setLevel(logging.NOTSET)  # as if nothing had silenced it yet
    doc = read_one(tmp_path / "bent.pdf", make_pdf(["Repaired"], xref_shift=3))
    assert doc.text == "Repaired"
    assert capfd.readouterr().err == ""


# -- tables ------------------------------------------------------------------------------------


def write_parquet(path: Path, columns: dict, **kwargs) -> Path:
    pq.write_table(pa.table(columns), path, **kwargs)
    return path


def test_is_table():
    assert is_table("/a/b.PARQUET") and is_table("x.ndjson") and is_table("x.tsv")
    assert not is_table("x.json") and kind_of("x.json") == "code"


def test_parquet_rows(tmp_path):
    when = dt.datetime(2024, 5, 1, 12, 30)
    path = write_parquet(
        tmp_path / "t.parquet",
        {
            "text": ["alpha", None, "gamma", "  ", "epsilon"],
            "n": [1, 2, None, 4, 5],
            "when": [when] * 5,
            "blob": [b"\x00"] * 5,
            "tags": [["a", "b"], [], None, ["c"], ["d"]],
        },
    )
    items = read(path, batch_rows=2)
    assert [(d.row_id, d.text) for d in docs(items)] == [
        ("0", "alpha"),
        ("2", "gamma"),
        ("4", "epsilon"),
    ]
    first = docs(items)[0]
    assert first.doc_id == f"{path}#0" and first.kind == "table" and first.encoding is None
    assert first.meta == {"n": 1, "when": "2024-05-01T12:30:00", "tags": ["a", "b"]}
    json.dumps(first.meta)
    assert skips(items) == [
        Skipped(str(path), "no text in row", error=False, row_id="1"),
        Skipped(str(path), "no text in row", error=False, row_id="3"),
    ]


def test_parquet_non_string_text_columns_joined_in_order(tmp_path):
    path = write_parquet(
        tmp_path / "t.parquet",
        {
            "title": ["T1", "T2"],
            "score": [1.5, float("nan")],
            "flag": [True, None],
            "words": [["x", "y"], None],
            "info": [{"k": 1}, None],
        },
    )
    items = read(path, text_columns=("title", "score", "flag", "words", "info"))
    assert [d.text for d in docs(items)] == ['T1\n\n1.5\n\nTrue\n\nx y\n\n{"k": 1}', "T2"]
    assert docs(items)[0].meta == {}


def test_parquet_without_text_column(tmp_path):
    path = write_parquet(tmp_path / "t.parquet", {"title": ["a"], "n": [1]})
    (item,) = read(path)
    assert item.error and "title, n" in item.reason and "--text-column" in item.reason


def test_missing_text_column_named(tmp_path):
    path = write_parquet(tmp_path / "t.parquet", {"text": ["a"], "n": [1]})
    (item,) = read(path, text_columns=("body",))
    assert item.error and "'body'" in item.reason and "text, n" in item.reason


def test_parquet_zero_rows(tmp_path):
    path = write_parquet(tmp_path / "t.parquet", {"text": pa.array([], pa.string())})
    assert read(path) == [Skipped(str(path), "table has no rows", error=False)]


def test_corrupt_parquet(tmp_path):
    path = tmp_path / "bad.parquet"
    path.write_bytes(b"PAR1 this is not really parquet")
    (item,) = read(path)
    assert item.error and item.reason.startswith("corrupt Parquet file: ")
    assert "\n" not in item.reason


def test_parquet_damaged_inside(tmp_path):
    good = write_parquet(tmp_path / "good.parquet", {"text": [f"row {i}" for i in range(500)]})
    data = bytearray(good.read_bytes())
    data[100:300] = bytes(200)
    items = read(_write(tmp_path / "bad.parquet", bytes(data)))
    assert items[-1].error and "Parquet" in items[-1].reason


def test_id_column_and_duplicates(tmp_path):
    path = write_parquet(
        tmp_path / "t.parquet", {"id": ["a", "b", "a", None], "text": ["one", "two", "three", "4"]}
    )
    items = read(path, id_column="id")
    assert [(d.doc_id, d.row_id, d.meta) for d in docs(items)] == [
        (f"{path}#a", "a", {"id": "a"}),
        (f"{path}#b", "b", {"id": "b"}),
    ]
    dup, null = skips(items)
    assert (dup.row_id, dup.error) == ("a", True) and dup.reason.startswith("duplicate id")
    assert (null.row_id, null.error) == ("3", True)


def test_missing_id_column(tmp_path):
    path = write_parquet(tmp_path / "t.parquet", {"text": ["one"], "n": [1]})
    (item,) = read(path, id_column="uid")
    assert item.error and "'uid'" in item.reason and "text, n" in item.reason


def test_rows_without_text_are_not_flooded(tmp_path):
    path = write_parquet(tmp_path / "t.parquet", {"text": [""] * 25 + ["last"]})
    items = read(path)
    assert len(docs(items)) == 1
    assert [s.row_id for s in skips(items)] == [str(i) for i in range(20)] + ["*"]
    assert skips(items)[-1] == Skipped(str(path), "5 more rows without text", row_id="*")


def test_jsonl(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text(
        '{"text": "first", "n": 1}\n'
        "{not json}\n"
        "\n"
        "[1, 2]\n"
        '{"text": "second", "n": NaN, "extra": {"a": [1]}}\n'
    )
    items = read(path)
    assert [(d.row_id, d.text, d.meta) for d in docs(items)] == [
        ("0", "first", {"n": 1}),
        ("3", "second", {"n": None, "extra": {"a": [1]}}),
    ]
    bad, not_object = skips(items)
    assert (bad.row_id, bad.error) == ("line 2", True) and bad.reason.startswith("invalid JSON")
    assert (not_object.row_id, not_object.reason) == ("line 4", "not a JSON object")


def test_jsonl_empty(tmp_path):
    path = _write(tmp_path / "t.ndjson", b"\n\n")
    assert read(path) == [Skipped(str(path), "table has no rows")]


def test_csv(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text('id,body,lang\n7,"multi\nline, with comma",en\n8,,fr\n9,plain,de,extra\n')
    items = read(path, id_column="id")
    assert [(d.row_id, d.text, d.meta, d.encoding) for d in docs(items)] == [
        ("7", "multi\nline, with comma", {"id": "7", "lang": "en"}, "utf-8"),
        ("9", "plain", {"id": "9", "lang": "de"}, "utf-8"),
    ]
    assert skips(items) == [Skipped(str(path), "no text in row", row_id="8")]


def test_tsv_in_cp1252(tmp_path):
    path = _write(tmp_path / "t.tsv", 'text\tn\ncafé, "quoted" here\t1\n'.encode("cp1252"))
    note, doc = read(path)
    assert note.message == "not valid UTF-8; decoded as cp1252"
    assert (doc.text, doc.meta, doc.encoding) == ('café, "quoted" here', {"n": "1"}, "cp1252")


def test_csv_header_only(tmp_path):
    path = _write(tmp_path / "t.csv", b"text,n\n")
    assert read(path) == [Skipped(str(path), "table has no rows")]


def test_short_fuzz_run_finds_no_crash(tmp_path):
    """A few seconds of bench/fuzz_readers.py (the long run is a benchmark, outside CI)."""
    import importlib.util

    from tests.conftest import REPO

    spec = importlib.util.spec_from_file_location(
        "fuzz_readers", REPO / "bench" / "fuzz_readers.py"
    )
    fuzz = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fuzz)
    result = fuzz.run(seconds=4, seed=1, folder=tmp_path)
    assert result["executions"] > 50
    assert result["crashes"] == 0, result["first_crashes"]
