"""Documentation as a test: the README introduces every command and exit code, docs/cli.md
holds each command's own --help and every one of its options, and no relative link is broken."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import typer.main

from tests.conftest import REPO

README = REPO / "README.md"
CLI_DOC = REPO / "docs" / "cli.md"
GENERATOR = REPO / "scripts" / "gen_cli_docs.py"
DOCS = [README, *sorted((REPO / "docs").glob("*.md"))]


def _cli():
    """bienc's click command: the one place this file imports the CLI, so a module move is one line."""
    from bienc_cli.cli.main import app

    return typer.main.get_command(app)


def _exit_statuses():
    """The exit codes bienc defines (one import, as for the CLI)."""
    from bienc_cli.errors import ExitStatus

    return list(ExitStatus)


COMMANDS = _cli().commands  # type: ignore[attr-defined]


def _section(markdown: str, heading: str) -> str:
    """The text under the `## HEADING` line of MARKDOWN, up to the next `## ` heading."""
    parts = re.split(rf"^## {re.escape(heading)}\n", markdown, maxsplit=1, flags=re.MULTILINE)
    assert len(parts) == 2, f"no '## {heading}' section"
    return re.split(r"^## ", parts[1], maxsplit=1, flags=re.MULTILINE)[0]


def _without_code(markdown: str) -> str:
    """MARKDOWN without its fenced code blocks (a `# comment` in a shell block is no heading)."""
    return re.sub(r"^```.*?^```", "", markdown, flags=re.MULTILINE | re.DOTALL)


def _generator(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(GENERATOR), *args], capture_output=True, text=True, check=False
    )


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_command_has_help_and_a_readme_section(name):
    command = COMMANDS[name]
    assert command.help and command.help.strip()
    assert re.search(rf"^### `bienc {name}\b", README.read_text(encoding="utf-8"), re.MULTILINE), (
        f"no README section for {name}"
    )


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_option_has_help_and_is_in_its_own_cli_reference_section(name):
    """Per command: `cluster --threshold` does not count as documented because dedup's is."""
    section = _section(CLI_DOC.read_text(encoding="utf-8"), f"bienc {name}")
    for param in COMMANDS[name].params:
        if param.param_type_name != "option":
            continue
        assert param.help, f"bienc {name} {param.opts}: no help text"
        for opt in [*param.opts, *param.secondary_opts]:
            assert re.search(rf"(?<![\w-]){re.escape(opt)}(?![\w-])", section), (
                f"bienc {name} {opt} is not in the '## bienc {name}' section of docs/cli.md"
            )


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_cli_reference_block_is_the_commands_help(name):
    done = _generator("--check", name)
    assert done.returncode == 0, done.stderr


def test_cli_reference_is_up_to_date():
    """The whole file: `bienc --help` too, and no section of a command that is gone."""
    done = _generator("--check")
    assert done.returncode == 0, done.stderr


def test_generator_check_catches_a_stale_block_and_regeneration_keeps_the_prose(tmp_path):
    doc = tmp_path / "cli.md"
    shutil.copyfile(CLI_DOC, doc)
    assert _generator("--doc", str(doc)).returncode == 0
    fresh = doc.read_text(encoding="utf-8")
    assert "Incremental runs: a file whose size" in fresh  # hand-written, after index's block
    doc.write_text(fresh.replace("  -L, --follow-symlinks", "  --follow-symlinks", 1), "utf-8")
    done = _generator("--check", "--doc", str(doc))
    assert done.returncode == 1
    assert "bienc index" in done.stderr and "-L, --follow-symlinks" in done.stderr
    assert _generator("--check", "--doc", str(doc), "query").returncode == 0
    assert _generator("--doc", str(doc)).returncode == 0
    assert doc.read_text(encoding="utf-8") == fresh


def test_generator_adds_a_section_for_a_new_command_and_refuses_one_for_a_command_gone(tmp_path):
    doc = tmp_path / "cli.md"
    text = CLI_DOC.read_text(encoding="utf-8")
    doc.write_text(text.split("\n## bienc verify\n", 1)[0], encoding="utf-8")
    done = _generator("--check", "--doc", str(doc))
    assert done.returncode == 1 and "bienc verify --help" in done.stderr
    assert _generator("--doc", str(doc)).returncode == 0
    assert _generator("--check", "--doc", str(doc)).returncode == 0
    assert "\n## bienc verify\n" in doc.read_text(encoding="utf-8")
    gone = text.replace("`bienc verify --help`", "`bienc gone --help`")
    doc.write_text(gone, encoding="utf-8")
    done = _generator("--doc", str(doc))
    assert done.returncode == 1 and "bienc gone" in done.stderr
    assert doc.read_text(encoding="utf-8") == gone  # unchanged


def test_every_exit_code_is_documented():
    table = _section(README.read_text(encoding="utf-8"), "Exit codes")
    for status in _exit_statuses():
        assert re.search(rf"^\| {int(status)} \|", table, re.MULTILINE), (
            f"exit code {status} undocumented"
        )


def _anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives MARKDOWN's headings: lower case, punctuation dropped, spaces
    to hyphens, `-1`, `-2` ... after repeats."""
    anchors: set[str] = set()
    seen: dict[str, int] = {}
    for heading in re.findall(r"^#{1,6} (.+)$", _without_code(markdown), re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        repeat = seen.get(slug, 0)
        seen[slug] = repeat + 1
        anchors.add(f"{slug}-{repeat}" if repeat else slug)
    return anchors


def test_anchors_follow_github():
    assert _anchors("## `bienc index [SOURCE...]`\n## Exit codes\n### Exit codes\n") == {
        "bienc-index-source",
        "exit-codes",
        "exit-codes-1",
    }


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(doc: Path):
    text = doc.read_text(encoding="utf-8")
    for target in re.findall(r"\]\(([^)\s]+)\)", _without_code(text)):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        file = (doc.parent / path).resolve() if path else doc
        assert file.exists(), f"{doc.name}: link to {target}: no such file"
        if anchor:
            assert anchor in _anchors(file.read_text(encoding="utf-8")), (
                f"{doc.name}: link to {target}: no such heading"
            )
