"""The command line through typer's CliRunner, with the fake encoder: formats and exit codes."""

from __future__ import annotations

import csv
import io
import json
import multiprocessing
import os
import re
import subprocess
import sys
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from bienc_cli.cli.main import app
from bienc_cli.errors import ExitStatus
from bienc_cli.store import generations as store
from bienc_cli.store import lock

runner = CliRunner()


def bienc(*args, input=None):
    return runner.invoke(app, [str(a) for a in args], input=input, catch_exceptions=False)


@pytest.fixture
def indexed(tmp_path, corpus, fake_encoder):
    root = tmp_path / "idx"
    result = bienc("index", corpus, "--index", root, "--quiet")
    assert result.exit_code == 0, result.output
    return root


def test_index_json_report(tmp_path, corpus, fake_encoder):
    result = bienc("index", corpus, "--index", tmp_path / "idx", "--json", "--quiet")
    assert result.exit_code == 0
    report = json.loads(result.stdout)
    assert report["added"] == 4 and report["status"] == "ok" and report["exit_code"] == 0
    assert report["generation"] == 1 and report["skipped"] == []


def test_index_summary_goes_to_stderr(tmp_path, corpus, fake_encoder):
    result = bienc("index", corpus, "--index", tmp_path / "idx")
    assert result.stdout == ""
    assert "4 added" in result.stderr


@pytest.mark.parametrize("null", [False, True])
def test_index_paths_from_stdin(tmp_path, corpus, fake_encoder, null):
    paths = [str(corpus / "cats.md"), str(corpus / "sub" / "rockets.txt")]
    sep = "\0" if null else "\n"
    args = ["index", "-", "--index", tmp_path / "idx", "--json", "-q"] + (["-0"] if null else [])
    result = bienc(*args, input=sep.join(paths) + sep)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["added"] == 2


def _query(root, *args, input=None):
    return bienc("query", *args, "--index", root, input=input)


def test_query_formats_parse(indexed, corpus):
    text = "Cats purr and sleep most of the day in the sun."
    as_json = json.loads(_query(indexed, text, "-f", "json", "-k", "2").stdout)
    assert [h["rank"] for h in as_json] == [1, 2]
    assert as_json[0]["path"].endswith("cats.md") and as_json[0]["score"] > 0.9
    assert {"query", "score", "path", "line_start", "line_end", "snippet", "text"} <= set(
        as_json[0]
    )
    lines = _query(indexed, text, "-f", "jsonl", "-k", "3").stdout.splitlines()
    assert len(lines) == 3 and all(json.loads(line)["query"] == text for line in lines)
    rows = list(csv.DictReader(io.StringIO(_query(indexed, text, "-f", "csv", "-k", "3").stdout)))
    assert len(rows) == 3 and rows[0]["path"].endswith("cats.md")
    tsv = _query(indexed, text, "-k", "2").stdout.splitlines()  # not a terminal: tsv
    score, where, snippet = tsv[0].split("\t")
    assert float(score) > 0.9 and where.endswith("cats.md:1-3") and snippet.startswith("# Cats")
    paths = _query(indexed, text, "-f", "paths", "-k", "2").stdout.splitlines()
    assert paths[0].endswith("cats.md") and len(paths) == 2
    nul = _query(indexed, text, "-f", "paths", "-0", "-k", "2").stdout
    assert nul.endswith("\0") and nul.count("\0") == 2


def test_table_format_on_request(indexed, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # rich would otherwise wrap long temporary paths
    result = _query(indexed, "cats", "-f", "table")
    assert result.exit_code == 0 and "cats.md" in result.stdout


def test_queries_from_stdin_carry_their_query(indexed):
    result = _query(indexed, "-", "-f", "jsonl", "-k", "1", input="cats purr\n\nrockets orbit\n")
    hits = [json.loads(line) for line in result.stdout.splitlines()]
    assert [h["query"] for h in hits] == ["cats purr", "rockets orbit"]
    assert hits[1]["path"].endswith("rockets.txt")


def test_k_larger_than_index_is_clamped(indexed):
    result = _query(indexed, "anything at all", "-k", "500", "-f", "json")
    assert result.exit_code == 0 and len(json.loads(result.stdout)) == 4


def test_chunks_and_path_filter(indexed):
    result = _query(indexed, "cats", "--path", "*/sub/*", "-f", "json", "--chunks")
    hits = json.loads(result.stdout)
    assert hits and all("/sub/" in h["path"] for h in hits)


def test_exit_0_and_1_like_grep(indexed):
    assert _query(indexed, "cats").exit_code == ExitStatus.OK
    assert _query(indexed, "cats", "--min-score", "0.999").exit_code == ExitStatus.NO_RESULTS
    assert _query(indexed, "cats", "--path", "nothing/*").exit_code == ExitStatus.NO_RESULTS


@pytest.mark.parametrize(
    "args",
    [
        ["query", "cats", "-f", "xml"],
        ["query", "   "],
        ["query"],
        ["query", "cats", "-k", "0"],
        ["query", "cats", "--where", "nocolumn"],
        ["index", "/does/not/exist"],
        ["index", "--max-file-size", "lots"],
        ["frobnicate"],
    ],
)
def test_exit_2_usage(indexed, args):
    result = bienc(*args, "--index", indexed) if args[0] != "frobnicate" else bienc(*args)
    assert result.exit_code == ExitStatus.USAGE
    assert "Traceback" not in result.output


def test_exit_3_partial_when_a_source_cannot_be_read(
    tmp_path, corpus, fake_encoder, unreadable_cats
):
    result = bienc("index", corpus, "--index", tmp_path / "idx", "--json")
    assert result.exit_code == ExitStatus.PARTIAL
    report = json.loads(result.stdout)
    assert report["status"] == "partial" and report["skipped"][0]["reason"] == "permission denied"
    assert "cats.md: permission denied" in result.stderr


def test_exit_4_no_index(tmp_path, fake_encoder):
    for command in (["query", "cats"], ["info"]):
        result = bienc(*command, "--index", tmp_path / "none")
        assert result.exit_code == ExitStatus.NO_INDEX
        assert result.stderr.startswith("bienc: error: no bienc index at")


def test_exit_5_incompatible_model(indexed, corpus, tmp_path):
    from bienc_cli.encoding.model import resolve_model

    other = tmp_path / "other"
    other.mkdir()
    src = resolve_model(None).path
    for name in ("config.json", "tokenizer.json", "modules.json"):
        (other / name).write_bytes(open(f"{src}/{name}", "rb").read())
    config = json.loads((other / "config.json").read_text())
    config["hidden_size"] = 768
    (other / "config.json").write_text(json.dumps(config))
    result = bienc("index", corpus, "--index", indexed, "--model", other)
    assert result.exit_code == ExitStatus.INCOMPATIBLE
    assert "was built with all-MiniLM-L6-v2 (384-d)" in result.stderr


def test_exit_6_model_unavailable(tmp_path, corpus):
    result = bienc("index", corpus, "--index", tmp_path / "idx", "--model", tmp_path / "no-model")
    assert result.exit_code == ExitStatus.MODEL_UNAVAILABLE
    result = bienc("index", corpus, "--index", tmp_path / "idx", "--model", "nobody/no-such-model")
    assert result.exit_code == ExitStatus.MODEL_UNAVAILABLE
    assert "Traceback" not in result.output


def _hold(root, ready, seconds):
    with lock.write_lock(root, wait=None):
        ready.set()
        time.sleep(seconds)


def test_exit_7_locked(indexed, corpus):
    ready = multiprocessing.Event()
    holder = multiprocessing.Process(target=_hold, args=(indexed, ready, 3))
    holder.start()
    try:
        assert ready.wait(10)
        result = bienc("index", corpus, "--index", indexed, "--no-wait")
        assert result.exit_code == ExitStatus.LOCKED
        result = bienc("index", corpus, "--index", indexed, "--wait", "0.3")
        assert result.exit_code == ExitStatus.LOCKED
        assert "another bienc process" in result.stderr
    finally:
        holder.join()
    # queries never wait for writers
    assert _query(indexed, "cats").exit_code == 0


def test_exit_8_disk_full_keeps_previous_index(indexed, corpus, monkeypatch):
    (corpus / "new.txt").write_text("A brand new document about volcanoes.")

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("pyarrow.parquet.write_table", full)
    result = bienc("index", corpus, "--index", indexed)
    assert result.exit_code == ExitStatus.IO_ERROR
    assert "disk is full" in result.stderr and "previous index is unchanged" in result.stderr
    monkeypatch.undo()
    assert store.open_index(indexed).manifest["generation"] == 1


def test_exit_130_interrupted(tmp_path, corpus, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("bienc_cli.indexing.run.run_index", interrupted)
    result = bienc("index", corpus, "--index", tmp_path / "idx")
    assert result.exit_code == ExitStatus.INTERRUPTED


def test_info(indexed, corpus):
    data = json.loads(bienc("info", "--index", indexed, "--json").stdout)
    assert data["documents"] == 4 and data["chunks"] == 4 and data["dim"] == 384
    assert data["stale"]["is_stale"] is False
    (corpus / "cats.md").write_text("changed")
    (corpus / "more.txt").write_text("more")
    stale = json.loads(bienc("info", "--index", indexed, "--json").stdout)["stale"]
    assert (stale["added"], stale["changed"], stale["removed"]) == (1, 1, 0)
    human = bienc("info", "--index", indexed).stdout
    assert "stale.is_stale" in human and "True" in human


def test_every_command_has_help():
    for command in ("index", "query", "info"):
        result = bienc(command, "--help")
        assert result.exit_code == 0 and "Usage" in result.stdout


def test_version():
    from bienc_cli import __version__

    assert bienc("--version").stdout.strip() == f"bienc {__version__}"


@pytest.mark.parametrize(
    "argv",
    [["index", "--help"], ["query", "--help"], ["-v", "info", "--help"], ["dedup", "--help"],
     ["cluster", "--help"], ["eval", "--help"], ["verify", "--help"]],
)  # fmt: skip
def test_entry_point_builds_the_named_command(argv, monkeypatch, capsys):
    from bienc_cli.cli import main as cli

    monkeypatch.setattr("sys.argv", ["bienc", *argv])
    with pytest.raises(SystemExit) as exit:
        cli.main()
    assert exit.value.code == 0
    command = next(a for a in argv if not a.startswith("-"))
    assert f"bienc {command} [OPTIONS]" in " ".join(capsys.readouterr().out.split())


def test_query_entry_point_leaves_without_teardown_with_its_exit_code(indexed, monkeypatch, capsys):
    from bienc_cli.cli import main as cli

    left = []
    monkeypatch.setattr(cli, "_leave", lambda code: left.append(code))
    for text, code in (("cats", ExitStatus.OK), ("zzz", ExitStatus.NO_RESULTS)):
        argv = ["bienc", "query", text, "--index", str(indexed), "--min-score", "0.3"]
        monkeypatch.setattr("sys.argv", argv)
        cli.main()
        assert left.pop() == code
    assert "cats" in capsys.readouterr().out


def test_entry_point_without_a_known_command_uses_the_whole_app(monkeypatch, capsys):
    from bienc_cli.cli import main as cli

    monkeypatch.setattr("sys.argv", ["bienc", "--help"])
    with pytest.raises(SystemExit) as exit:
        cli.main()
    listing = capsys.readouterr().out
    assert exit.value.code == 0 and all(c in listing for c in ("index", "query", "dedup"))
    monkeypatch.setattr("sys.argv", ["bienc", "quer", "x"])
    with pytest.raises(SystemExit) as exit:
        cli.main()
    assert exit.value.code == ExitStatus.USAGE and "query" in capsys.readouterr().err


# Every option a user can get wrong, through the whole CLI: one line, exit 2, nothing created.
# NEW is an index folder that does not exist yet; IDX an index; OUT a file that must not appear.
BAD_OPTIONS = [
    ["index", "CORPUS", "-i", "NEW", "--overlap", "200"],  # the model's chunks hold 254 tokens
    ["index", "CORPUS", "-i", "NEW", "--overlap", "99999999999999999999"],
    ["index", "CORPUS", "-i", "NEW", "--overlap", "-1"],
    ["index", "CORPUS", "-i", "NEW", "--overlap", "nan"],
    ["index", "CORPUS", "-i", "NEW", "--ef", "0"],
    ["index", "CORPUS", "-i", "NEW", "--ef", "99999999999999999999"],  # hnswlib: TypeError
    ["index", "CORPUS", "-i", "NEW", "--batch-size", "0"],
    ["index", "CORPUS", "-i", "NEW", "--wait", "-1"],
    ["index", "CORPUS", "-i", "NEW", "--wait", "nan"],
    ["index", "CORPUS", "-i", "NEW", "--max-file-size", "garbage"],
    ["index", "CORPUS", "-i", "NEW", "--max-file-size", "0"],  # 0 is not "no limit"
    ["index", "CORPUS", "-i", "NEW", "--max-file-size", "0.1"],
    ["index", "CORPUS", "-i", "NEW", "--backend", "nonsense"],
    ["index", "CORPUS", "-i", "NEW", "--no-such-option"],
    ["index", "CORPUS", "-i", "NEW", "-0"],  # -0 reads stdin: it needs SOURCE -
    ["query", "cats", "-i", "IDX", "-k", "0"],
    ["query", "cats", "-i", "IDX", "-k", "-1"],
    ["query", "cats", "-i", "IDX", "--ef", "0"],
    ["query", "cats", "-i", "IDX", "--ef", "99999999999999999999"],
    ["query", "cats", "-i", "IDX", "--min-score", "nan"],
    ["query", "cats", "-i", "IDX", "--min-score", "2"],
    ["query", "cats", "-i", "IDX", "--min-score", "-inf"],
    ["query", "cats", "-i", "IDX", "--backend", "nonsense"],
    ["query", "cats", "-i", "IDX", "--where", "=x"],
    ["query", "cats", "-i", "IDX", "-f", "nonsense"],
    ["query", "cats", "-i", "IDX", "-0", "-f", "json"],
    ["dedup", "-i", "IDX", "--threshold", "2"],
    ["dedup", "-i", "IDX", "--threshold", "nan"],
    ["dedup", "-i", "IDX", "--neighbours", "0"],
    ["dedup", "-i", "IDX", "--keep", "nonsense"],
    ["dedup", "-i", "IDX", "--action", "nonsense"],
    ["dedup", "-i", "IDX", "-f", "nonsense"],
    ["dedup", "-i", "IDX", "--output", "OUT.xyz"],
    ["dedup", "-i", "IDX", "-0"],
    ["dedup", "CORPUS", "--max-file-size", "garbage"],
    ["cluster", "-i", "IDX", "-n", "0"],
    ["cluster", "-i", "IDX", "-n", "99999999999999999999"],
    ["cluster", "-i", "IDX", "--max-clusters", "1"],
    ["cluster", "-i", "IDX", "--seed", "-1"],  # scikit-learn: InvalidParameterError
    ["cluster", "-i", "IDX", "--seed", "4294967296"],
    ["cluster", "-i", "IDX", "--keywords", "0"],
    ["cluster", "-i", "IDX", "--representatives", "-1"],
    ["cluster", "-i", "IDX", "-M", "nonsense"],
    ["cluster", "-i", "IDX", "-M", "agglomerative", "--threshold", "nan"],
    ["cluster", "-i", "IDX", "-M", "agglomerative", "--linkage", "nonsense"],
    ["cluster", "-i", "IDX", "-M", "hdbscan", "--min-samples", "0"],
    ["cluster", "-i", "IDX", "-f", "nonsense"],
    ["cluster", "-i", "IDX", "-o", "OUT.xyz"],
    ["cluster", "-i", "IDX", "--plot", "OUT.xyz"],
    ["cluster", "-i", "IDX", "-0"],
    ["eval", "-i", "IDX", "--qrels", "QRELS", "-k", "0"],
    ["eval", "-i", "IDX", "--qrels", "QRELS", "-k", "a"],
    ["eval", "-i", "IDX", "--qrels", "QRELS", "--ef", "0"],
    ["eval", "-i", "IDX", "--qrels", "QRELS", "--ef", "99999999999999999999"],
    ["eval", "-i", "IDX", "--qrels", "QRELS", "--target-recall", "nan"],
    ["eval", "-i", "IDX", "--qrels", "QRELS", "-f", "nonsense"],
    ["eval", "-i", "IDX", "--qrels", "QRELS", "--per-query", "OUT.xyz"],
    ["verify", "-i", "IDX", "--repair", "--wait", "nan"],
    ["frobnicate"],
]


@pytest.mark.parametrize("args", BAD_OPTIONS, ids=" ".join)
def test_a_bad_option_is_one_line_and_exit_2_and_creates_nothing(indexed, corpus, tmp_path, args):
    qrels = tmp_path / "qrels.csv"
    qrels.write_text("query,relevant\ncats,cats.md\n")
    names = {"CORPUS": corpus, "NEW": tmp_path / "new", "IDX": indexed, "QRELS": qrels}
    args = [str(names.get(a, a)).replace("OUT", str(tmp_path / "out")) for a in args]
    before = sorted(tmp_path.rglob("*"))
    result = runner.invoke(app, args, catch_exceptions=True)  # an exception must not escape
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == ExitStatus.USAGE, result.output
    assert result.stderr.startswith("bienc: error: ") and result.stderr.count("\n") == 1
    assert "Traceback" not in result.output and result.stdout == ""
    named = args[-2] if len(args) > 1 and args[-2].startswith("-") else args[-1]
    assert named.lower() in result.stderr.lower()  # it names what was wrong
    assert sorted(tmp_path.rglob("*")) == before  # no index folder, no lock, no output file


def test_the_overlap_error_says_the_range_of_this_model(tmp_path, corpus, fake_encoder):
    result = bienc("index", corpus, "--index", tmp_path / "idx", "--overlap", "200")
    assert "--overlap 200: give 0 to 127 tokens" in result.stderr
    assert bienc("index", corpus, "--index", tmp_path / "idx", "--overlap", "127").exit_code == 0


@pytest.mark.parametrize(
    "args",
    [
        ["cluster", "CORPUS", "-M", "nonsense"],
        ["cluster", "CORPUS", "-M", "hdbscan", "-n", "3"],
        ["cluster", "CORPUS", "--seed", "-1"],
        ["dedup", "CORPUS", "--output", "OUT.xyz"],
        ["dedup", "CORPUS", "--threshold", "2"],
    ],
    ids=" ".join,
)
def test_options_are_checked_before_anything_is_read_or_encoded(
    tmp_path, corpus, fake_encoder, args
):
    args = [str(corpus) if a == "CORPUS" else a.replace("OUT", str(tmp_path / "out")) for a in args]
    result = bienc(*args)
    assert result.exit_code == ExitStatus.USAGE and fake_encoder.calls == 0


def test_hdbscan_asked_for_more_neighbours_than_documents_finds_only_outliers(indexed):
    args = ["-M", "hdbscan", "--min-cluster-size", "2", "--min-samples", "50", "-f", "json"]
    result = bienc("cluster", "-i", indexed, *args)
    assert result.exit_code == 0, result.output  # scikit-learn raised ValueError here
    assert {d["cluster"] for d in json.loads(result.stdout)["documents"]} == {-1}


# -- names and text that must not break a line, a field or the terminal ---------------------

WEIRD_NAMES = [
    "tab\there.txt",
    "new\nline.txt",
    "cr\rname.txt",
    "back\\slash.txt",
    "esc\x1b[31m.txt",
]
# Terminal escapes (a title change, red), rich markup and an emoji code in the text itself.
WEIRD_TEXT = "Cats purr \x1b]0;owned\x07 in the \x1b[31msun [/bold] :cat: \x9b2J all day.\n"
CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # what may never be printed raw


def unescape_tsv(field):
    """The inverse of escape_text, as a PostgreSQL COPY reader decodes a field."""
    out = bytearray()
    i = 0
    while i < len(field):
        if field[i] == "\\":
            nxt = field[i + 1]
            if nxt == "x":
                out.append(int(field[i + 2 : i + 4], 16))
                i += 4
                continue
            out += {"t": b"\t", "n": b"\n", "r": b"\r", "\\": b"\\"}[nxt]
            i += 2
        else:
            out += field[i].encode("utf-8", "surrogateescape")
            i += 1
    return out.decode("utf-8", "surrogateescape")


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("plain.txt", "plain.txt"),
        ("a\tb", "a\\tb"),
        ("a\nb\rc", "a\\nb\\rc"),
        ("back\\slash", "back\\\\slash"),
        ("\x1b[31mred", "\\x1b[31mred"),
        ("nul\x00 del\x7f csi\x9b", "nul\\x00 del\\x7f csi\\xc2\\x9b"),
        ("line\u2028sep", "line\\xe2\\x80\\xa8sep"),
        ("caf\udce9.txt", "caf\\xe9.txt"),  # a Latin-1 name, surrogateescaped
        ("caf\\xe9.txt", "caf\\\\xe9.txt"),  # a UTF-8 name with a backslash: not the same
        ("naïve 猫 ✓", "naïve 猫 ✓"),
    ],
)
def test_escape_text(text, shown):
    from bienc_cli.ui.output import escape_text

    assert escape_text(text) == shown
    assert unescape_tsv(shown) == text


# Any text, and the lone surrogates U+DC80..U+DCFF that stand for the bytes of a non-UTF-8
# file name (os.fsdecode); other lone surrogates have no bytes to decode back to.
_NAME_CHARS = st.characters(blacklist_categories=("Cs",)) | st.characters(
    min_codepoint=0xDC80, max_codepoint=0xDCFF
)


@given(st.text(alphabet=_NAME_CHARS), st.text(alphabet=st.characters()))
@settings(max_examples=300, deadline=None)
def test_escaped_fields_are_one_field_of_one_line_and_tsv_decodes_back(name, anything):
    from bienc_cli.ui.output import escape_text

    for text in (name, anything):
        field = escape_text(text)
        assert not CONTROL.search(field) and "\t" not in field and "\n" not in field
        assert not re.search("[\u2028\u2029\ud800-\udfff]", field)
    assert unescape_tsv(escape_text(name)) == name


@pytest.fixture
def weird(tmp_path, fake_encoder):
    """An index of five copies of one text, named with a tab, newline, CR, backslash, ESC."""
    root = tmp_path / "weird"
    root.mkdir()
    for number, name in enumerate(WEIRD_NAMES):  # near, not exact, copies: --calibrate shows them
        (root / name).write_text(WEIRD_TEXT + f"Copy {number}.\n")
    index = tmp_path / "idx"
    assert bienc("index", root, "--index", index, "-q").exit_code == 0
    return root, index


def _fields(output, columns):
    lines = output.splitlines()
    assert all(len(line.split("\t")) == columns for line in lines), lines
    return [line.split("\t") for line in lines]


def _names_in(rows, column):
    return sorted(os.path.basename(unescape_tsv(row[column]).split(":")[0]) for row in rows)


def test_query_tsv_and_paths_escape_names(weird):
    root, index = weird
    rows = _fields(_query(index, "cats purr", "-f", "tsv").stdout, 3)
    assert _names_in(rows, 1) == sorted(WEIRD_NAMES)
    assert all("\\x1b]0;owned\\x07" in row[2] and not CONTROL.search(row[2]) for row in rows)
    two = _fields(_query(index, "-", "-f", "tsv", input="cats\nsun\n").stdout, 4)  # + query
    assert len(two) == 2 * len(WEIRD_NAMES)
    paths = _query(index, "cats purr", "-f", "paths").stdout.splitlines()
    assert sorted(os.path.basename(unescape_tsv(p)) for p in paths) == sorted(WEIRD_NAMES)
    exact = _query(index, "cats purr", "-0").stdout  # -0 alone: NUL-separated paths, exact
    assert sorted(os.path.basename(p) for p in exact.split("\0")[:-1]) == sorted(WEIRD_NAMES)


def test_dedup_tsv_ids_and_pairs_escape_names(weird):
    root, index = weird
    rows = _fields(bienc("dedup", "--index", index, "-f", "tsv").stdout, 4)
    assert len(rows) == 5 and _names_in(rows, 3) == sorted(WEIRD_NAMES)
    pairs = _fields(bienc("dedup", "--index", index, "--pairs", "-f", "tsv").stdout, 4)
    assert len(pairs) == 10  # near copies: every pair
    ids = bienc("dedup", "--index", index, "-f", "ids").stdout.splitlines()
    assert len(ids) == 4 and all(os.path.exists(unescape_tsv(i)) for i in ids)
    exact = bienc("dedup", "--index", index, "-f", "ids", "-0").stdout.split("\0")[:-1]
    assert len(exact) == 4 and all(os.path.exists(p) for p in exact)


def test_cluster_tsv_escapes_names(weird):
    root, index = weird
    rows = _fields(bienc("cluster", "--index", index, "-n", "1", "-f", "tsv").stdout, 4)
    assert _names_in(rows, 2) == sorted(WEIRD_NAMES)


@pytest.mark.parametrize(
    "args",
    [
        ["query", "cats purr", "-f", "table"],
        ["query", "-", "-f", "table"],
        ["dedup", "-f", "table"],
        ["dedup", "--pairs", "-f", "table"],
        ["dedup", "--calibrate"],
        ["cluster", "-n", "1", "-f", "table"],
        ["info"],
        ["verify"],
    ],
    ids=" ".join,
)
def test_human_output_shows_control_characters_escaped(weird, monkeypatch, args):
    monkeypatch.setenv("COLUMNS", "300")  # rich would otherwise wrap the names
    root, index = weird
    monkeypatch.chdir(root.parent)  # short relative paths: rich folds long ones
    result = runner.invoke(
        app, [*args, "--index", str(index)], input="cats\n[/bold] :cat:\n", catch_exceptions=False
    )
    assert result.exit_code == 0, result.output  # rich markup in a name or text stops nothing
    assert not CONTROL.search(result.output)
    if args[0] != "verify":
        shown = result.stdout
        names = ("tab\\there.txt", "new\\nline.txt", "cr\\rname.txt", "esc\\x1b[31m.txt")
        present = [name for name in names if name in shown]
        if "--calibrate" in args:  # the pairs nearest a few thresholds
            assert present
        elif args[0] in ("query", "dedup"):  # (cluster tables show titles, info the folder)
            assert len(present) == len(names)
        if "--pairs" not in args and args[0] != "info":
            assert "[/bold]" in shown and ":cat:" in shown and "🐱" not in shown


def test_json_keeps_the_exact_names(weird):
    root, index = weird
    hits = json.loads(_query(index, "cats purr", "-f", "json").stdout)
    assert sorted(os.path.basename(h["path"]) for h in hits) == sorted(WEIRD_NAMES)
    assert all(h["text"].startswith(WEIRD_TEXT.strip()) for h in hits)
    groups = json.loads(bienc("dedup", "--index", index, "-f", "json").stdout)
    members = [groups[0]["keeper"], *groups[0]["members"]]
    assert sorted(os.path.basename(m["path"]) for m in members) == sorted(WEIRD_NAMES)
    docs = json.loads(bienc("cluster", "--index", index, "-n", "1", "-f", "json").stdout)
    assert sorted(os.path.basename(d["path"]) for d in docs["documents"]) == sorted(WEIRD_NAMES)


def test_reports_and_errors_on_stderr_are_one_line_per_item(weird, tmp_path):
    root, _ = weird
    result = bienc("index", root, "--index", tmp_path / "small", "--max-file-size", "10")
    lines = result.stderr.splitlines()
    assert len(lines) == 1 + len(WEIRD_NAMES) and not CONTROL.search(result.stderr)
    assert sum("new\\nline.txt: larger than --max-file-size" in line for line in lines) == 1
    missing = bienc("index", tmp_path / "no\nsuch\x1b[2J", "--index", tmp_path / "x")
    assert missing.exit_code == ExitStatus.USAGE and missing.stderr.count("\n") == 1
    assert "no\\nsuch\\x1b[2J" in missing.stderr


# -- smaller promises: -0, negative zero, unwritable outputs, output suffixes ----------------


def test_query_null_alone_means_nul_separated_paths(indexed):
    out = _query(indexed, "cats", "-0", "-k", "2").stdout
    assert out.count("\0") == 2 and "\t" not in out and "\n" not in out


def test_fixed_never_prints_negative_zero():
    from bienc_cli.ui.output import fixed

    assert fixed(-1e-9) == "0.0000" and fixed(-0.00004) == "0.0000" and fixed(-0.0) == "0.0000"
    assert fixed(-0.00004, sign=True) == "+0.0000" and fixed(-0.5, 3) == "-0.500"


def test_cluster_distances_are_never_below_zero(indexed):
    import numpy as np

    from bienc_cli.cluster.algorithms import ClusterOptions, cluster_vectors

    # Every document alone in its cluster: 1 - cos(v, v) came out as -2.4e-07 in float32.
    vectors = np.random.default_rng(0).normal(size=(12, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    texts = [f"text {i}" for i in range(12)]
    assert (cluster_vectors(vectors, texts, ClusterOptions(n_clusters=12)).distances >= 0).all()
    tsv = bienc("cluster", "--index", indexed, "-n", "4", "-f", "tsv").stdout
    assert [row.split("\t")[1] for row in tsv.splitlines()] == ["0.0000"] * 4
    docs = json.loads(bienc("cluster", "--index", indexed, "-n", "4", "-f", "json").stdout)
    assert all(str(d["distance"]) == "0.0" for d in docs["documents"])


@pytest.mark.parametrize(
    "args",
    [
        ["cluster", "-o", "FILE/out.tsv"],
        ["cluster", "-o", "FILE/out.parquet"],
        ["eval", "--qrels", "QRELS", "--per-query", "FILE/per-query.jsonl"],
    ],
    ids=" ".join,
)
def test_an_output_file_that_cannot_be_written_is_the_storage_exit_code(indexed, tmp_path, args):
    (tmp_path / "file").write_text("a file, so file/out.tsv cannot be created\n")
    qrels = tmp_path / "qrels.csv"
    qrels.write_text("query,relevant\ncats,cats.md\n")
    names = {"QRELS": str(qrels)}
    args = [names.get(a, a.replace("FILE", str(tmp_path / "file"))) for a in args]
    result = bienc(*args, "--index", indexed, "-q")
    assert result.exit_code == ExitStatus.IO_ERROR, result.output
    assert result.stderr.startswith("bienc: error: cannot write") and result.stderr.count("\n") == 1


def test_an_output_suffix_bienc_does_not_know_needs_format(indexed, tmp_path):
    out = tmp_path / "clusters.out"
    assert bienc("cluster", "--index", indexed, "-o", out).exit_code == ExitStatus.USAGE
    assert not out.exists()
    assert bienc("cluster", "--index", indexed, "-o", out, "-f", "jsonl", "-q").exit_code == 0
    assert len([json.loads(line) for line in out.read_text().splitlines()]) == 4


@pytest.fixture
def option_corpus(tmp_path):
    """A folder where each reading option changes what is indexed."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("Alpha apples.\n")
    (docs / "b.md").write_text("Beta bananas.\n")
    (docs / ".hidden.txt").write_text("Hidden hazelnuts.\n")
    (docs / "ignored.txt").write_text("Ignored ink.\n")
    (docs / ".biencignore").write_text("ignored.txt\n")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "o.txt").write_text("Outside olives.\n")
    (docs / "link").symlink_to(tmp_path / "outside")
    (docs / "t.jsonl").write_text(json.dumps({"id": "r1", "text": "Row text.", "body": "Body."}))
    return docs


def _rows(root):
    return store.open_index(root).read_sidecar(columns=["doc_id", "text"]).to_pylist()


def _has(rows, name):
    return any(r["doc_id"].endswith(name) for r in rows)


# option key in the manifest, (flags that set it, its value), flags that clear it, and
# whether the index shows the option's effect
OPTIONS = {
    "include": (["--include", "*.md"], ["*.md"], ["--no-include"], lambda r: not _has(r, "a.txt")),
    "exclude": (["--exclude", "*.md"], ["*.md"], ["--no-exclude"], lambda r: not _has(r, "b.md")),
    "hidden": (["--hidden"], True, ["--no-hidden"], lambda r: _has(r, ".hidden.txt")),
    "use_ignore_files": (["--no-ignore"], False, ["--ignore"], lambda r: _has(r, "ignored.txt")),
    "follow_symlinks": (["-L"], True, ["--no-follow-symlinks"], lambda r: _has(r, "link/o.txt")),
    "text_columns": (
        ["--text-column", "body"],
        ["body"],
        ["--no-text-column"],
        lambda r: any(x["text"] == "Body." for x in r),
    ),
    "id_column": (["--id-column", "id"], "id", ["--no-id-column"], lambda r: _has(r, "#r1")),
}


@pytest.mark.parametrize("key", OPTIONS)
def test_remembered_options_are_replaced_cleared_and_shown(
    tmp_path, option_corpus, fake_encoder, key
):
    """The rule: an option given replaces the remembered one; its --no- form (or negation)
    sets it back to the default; plain runs and --rebuild keep what is remembered."""
    flags, value, clear, shows = OPTIONS[key]
    root = tmp_path / "idx"

    def index(*args):
        result = bienc("index", "-i", root, "-q", *args)
        assert result.exit_code == 0, result.output
        return _rows(root)

    def info():
        text = bienc("info", "-i", root, "--no-stale").stdout
        return json.loads(bienc("info", "-i", root, "--json", "--no-stale").stdout), text

    assert not shows(index(option_corpus))
    default = info()[0]["options"][key]
    assert shows(index(*flags)) and shows(index()) and shows(index("--rebuild"))
    data, text = info()
    assert data["options"][key] == value and default != value
    shown = ", ".join(value) if isinstance(value, list) else str(value)
    assert re.search(rf"options\.{key} +{re.escape(shown)} *\n", text)
    assert not shows(index(*clear)) and not shows(index())
    assert info()[0]["options"][key] == default
    assert shows(index("--rebuild", *flags)) and not shows(index("--rebuild", *clear))


def test_an_option_given_replaces_the_remembered_one(tmp_path, option_corpus, fake_encoder):
    root = tmp_path / "idx"
    bienc("index", option_corpus, "-i", root, "--exclude", "*.md", "-q")
    bienc("index", "-i", root, "--exclude", "*.txt", "-q")  # replaces; does not add
    rows = _rows(root)
    assert _has(rows, "b.md") and not _has(rows, "a.txt")
    result = bienc("index", "-i", root, "--exclude", "*.md", "--no-exclude")
    assert result.exit_code == ExitStatus.USAGE
    assert "--exclude and --no-exclude contradict" in result.stderr


def test_index_dedup_and_cluster_take_the_same_source_options():
    # One bundle (cli/options.py SOURCE_OPTIONS) reads sources for all three commands.
    import typer.main

    from bienc_cli.cli.main import build
    from bienc_cli.cli.options import SOURCE_OPTIONS

    commands = typer.main.get_command(build()).commands  # type: ignore[attr-defined]
    bundle = {
        tuple(sorted(p.opts + p.secondary_opts))
        for p in commands["index"].params
        if p.name in SOURCE_OPTIONS
    }
    assert len(bundle) == len(SOURCE_OPTIONS)
    for name in ("dedup", "cluster"):
        taken = {
            tuple(sorted(p.opts + p.secondary_opts))
            for p in commands[name].params
            if p.name in SOURCE_OPTIONS
        }
        assert taken == bundle, name
    assert ("--follow-symlinks", "--no-follow-symlinks", "-L") in bundle


def test_a_command_imports_only_its_own_module():
    code = (
        "import sys\n"
        "from bienc_cli.cli import main\n"
        "sys.argv = ['bienc', 'info', '--help']\n"
        "try:\n"
        "    main.main()\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(sorted(m for m in sys.modules if m.startswith('bienc_cli.cli.')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = out.stdout.strip().splitlines()[-1]
    assert loaded == "['bienc_cli.cli.info', 'bienc_cli.cli.main', 'bienc_cli.cli.options']"


@pytest.mark.parametrize("command", ["dedup", "cluster"])
@pytest.mark.parametrize(
    "flags, named",
    [(["-L"], "--follow-symlinks needs"), (["--no-hidden"], "--no-hidden needs"),
     (["--include", "*.md", "--ignore"], "--include, --ignore need")],
)  # fmt: skip
def test_source_options_without_sources_are_refused(command, indexed, flags, named):
    result = runner.invoke(app, [command, "--index", str(indexed), *flags])
    assert result.exit_code == ExitStatus.USAGE
    assert f"{named} SOURCES" in result.stderr
