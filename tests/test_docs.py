"""Documentation as a test: every command and every option is in the README, with help text."""

from __future__ import annotations

import re

import pytest
import typer.main

from bienc_cli.cli import app
from bienc_cli.errors import ExitStatus
from tests.conftest import REPO

README = (REPO / "README.md").read_text(encoding="utf-8")
COMMANDS = typer.main.get_command(app).commands  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_command_has_a_readme_section_and_help(name):
    command = COMMANDS[name]
    assert re.search(rf"^### `bienc {name}\b", README, re.MULTILINE), (
        f"no README section for {name}"
    )
    assert command.help and command.help.strip()


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_option_is_documented(name):
    for param in COMMANDS[name].params:
        if param.param_type_name != "option":
            continue
        longs = [o for o in param.opts if o.startswith("--") and o != "--help"]
        assert param.help, f"bienc {name} {longs}: no help text"
        if longs:
            assert any(f"`{o}" in README or f"{o}`" in README for o in longs), (
                f"bienc {name} {longs[0]} is not in the README"
            )


def test_every_exit_code_is_documented():
    table = README.split("\n## Exit codes\n", 1)[1].split("\n## ", 1)[0]
    for status in ExitStatus:
        assert re.search(rf"^\| {int(status)} \|", table, re.MULTILINE), (
            f"exit code {status} undocumented"
        )
