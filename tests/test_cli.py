"""The command line through typer's CliRunner, with the fake encoder: formats and exit codes."""

from __future__ import annotations

import csv
import io
import json
import multiprocessing
import time

import pytest
from typer.testing import CliRunner

from bienc_cli import store
from bienc_cli.cli import app
from bienc_cli.errors import ExitStatus

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
    from bienc_cli.encoder import resolve_model

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
    with store.write_lock(root, wait=None):
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

    monkeypatch.setattr("bienc_cli.indexing.run_index", interrupted)
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
    from bienc_cli import cli

    monkeypatch.setattr("sys.argv", ["bienc", *argv])
    with pytest.raises(SystemExit) as exit:
        cli.main()
    assert exit.value.code == 0
    command = next(a for a in argv if not a.startswith("-"))
    assert f"bienc {command} [OPTIONS]" in " ".join(capsys.readouterr().out.split())


def test_query_entry_point_leaves_without_teardown_with_its_exit_code(indexed, monkeypatch, capsys):
    from bienc_cli import cli

    left = []
    monkeypatch.setattr(cli, "_leave", lambda code: left.append(code))
    for text, code in (("cats", ExitStatus.OK), ("zzz", ExitStatus.NO_RESULTS)):
        argv = ["bienc", "query", text, "--index", str(indexed), "--min-score", "0.3"]
        monkeypatch.setattr("sys.argv", argv)
        cli.main()
        assert left.pop() == code
    assert "cats" in capsys.readouterr().out


def test_entry_point_without_a_known_command_uses_the_whole_app(monkeypatch, capsys):
    from bienc_cli import cli

    monkeypatch.setattr("sys.argv", ["bienc", "--help"])
    with pytest.raises(SystemExit) as exit:
        cli.main()
    listing = capsys.readouterr().out
    assert exit.value.code == 0 and all(c in listing for c in ("index", "query", "dedup"))
    monkeypatch.setattr("sys.argv", ["bienc", "quer", "x"])
    with pytest.raises(SystemExit) as exit:
        cli.main()
    assert exit.value.code == ExitStatus.USAGE and "query" in capsys.readouterr().err
