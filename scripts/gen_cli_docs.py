#!/usr/bin/env python3
"""Write the option reference in docs/cli.md from the commands' own --help, so it cannot drift.

docs/cli.md is hand-written prose around generated blocks, one per command, in the way cog
keeps sqlite-utils' CLI reference:

    ## bienc index

    <!-- generated from `bienc index --help` by scripts/gen_cli_docs.py: edit the command, not this block -->
    ```text
    Usage: bienc index [OPTIONS] [sources]...
    ...
    ```
    <!-- end of generated help -->

    Hand-written explanations follow, and are left alone.

Running the script rewrites every block from `python -m bienc_cli [CMD] --help` and changes no
other line; a command without a block gets a new `## bienc CMD` section at the end. With
`--check` it changes nothing and exits 1 when a block differs from the help (CI and
tests/test_docs.py run it). The CLI runs in a subprocess, never imported, so this script does
not depend on how the package is laid out. The help is rendered with a fixed width and no
colour, so the output is the same on every machine.

    python scripts/gen_cli_docs.py                   # regenerate docs/cli.md
    python scripts/gen_cli_docs.py --check [CMD...]  # exit 1 if (those blocks of) it is stale
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "cli.md"
BEGIN = "<!-- generated from `{command} --help` by scripts/gen_cli_docs.py: edit the command, not this block -->"  # fmt: skip
END = "<!-- end of generated help -->"
BLOCK = re.compile(
    r"^<!-- generated from `(?P<command>bienc(?: [\w-]+)?) --help` .*?-->\n.*?^" + re.escape(END),
    re.MULTILINE | re.DOTALL,
)


def help_text(*args: str) -> str:
    """`bienc ARGS --help` as a user reads it, from this checkout, at a fixed width and colourless."""
    env = os.environ | {"COLUMNS": "100", "NO_COLOR": "1", "TERM": "dumb"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, "-m", "bienc_cli", *args, "--help"],
        cwd=REPO, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"gen_cli_docs: bienc {' '.join(args)} --help failed:\n{done.stderr}")
    # click names the program after how it was started; users start it as `bienc`.
    text = done.stdout.replace("python -m bienc_cli", "bienc")
    return "\n".join(line.rstrip() for line in text.strip("\n").splitlines())


def command_names(top_help: str) -> list[str]:
    """The commands listed under "Commands:" in `bienc --help`, in their order there."""
    listing = top_help.split("\nCommands:\n", 1)[1]
    return re.findall(r"^  ([\w-]+)\s", listing, re.MULTILINE)


def block(command: str, help_: str) -> str:
    """The generated block for COMMAND ("bienc" or "bienc NAME"), markers included."""
    return f"{BEGIN.format(command=command)}\n```text\n{help_}\n```\n{END}"


def expected_blocks() -> dict[str, str]:
    """Every block docs/cli.md should hold, keyed by command ("bienc", "bienc index", ...)."""
    top = help_text()
    blocks = {"bienc": block("bienc", top)}
    for name in command_names(top):
        blocks[f"bienc {name}"] = block(f"bienc {name}", help_text(name))
    return blocks


def render(doc: str, blocks: dict[str, str]) -> str:
    """DOC with its blocks replaced by BLOCKS, and a new section for each command it lacks."""
    present = {m["command"] for m in BLOCK.finditer(doc)}
    unknown = sorted(present - blocks.keys())
    if unknown:
        raise SystemExit(
            f"gen_cli_docs: {DOC.name} documents {', '.join(unknown)}, which bienc no longer "
            "has: remove that section by hand"
        )
    doc = BLOCK.sub(lambda m: blocks[m["command"]], doc)
    for command in blocks.keys() - present:
        doc = doc.rstrip("\n") + f"\n\n## {command}\n\n{blocks[command]}\n"
    return doc


def stale(doc: str, blocks: dict[str, str]) -> list[str]:
    """A diff for each of BLOCKS that DOC lacks or holds in another form."""
    found = {m["command"]: m[0] for m in BLOCK.finditer(doc)}
    diffs = []
    for command, want in blocks.items():
        have = found.get(command)
        if have != want:
            diff = difflib.unified_diff(
                (have or "").splitlines(), want.splitlines(),
                f"{DOC.name}: {command}", f"{command} --help", lineterm="",
            )  # fmt: skip
            diffs.append("\n".join(diff))
    return diffs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if stale")
    parser.add_argument("--doc", type=Path, default=DOC, help="the file (default docs/cli.md)")
    parser.add_argument("commands", nargs="*", help="with --check: only these commands' blocks")
    args = parser.parse_args(argv)
    doc = args.doc.read_text(encoding="utf-8") if args.doc.exists() else "# Command reference\n"
    blocks = expected_blocks()
    if not args.check:
        args.doc.write_text(render(doc, blocks), encoding="utf-8")
        return 0
    if args.commands:
        wanted = [f"bienc {name}" for name in args.commands]
        if missing := [command for command in wanted if command not in blocks]:
            parser.error(f"not a bienc command: {', '.join(missing)}")
        blocks = {command: blocks[command] for command in wanted}
    else:
        render(doc, blocks)  # refuses sections of commands that are gone
    diffs = stale(doc, blocks)
    for diff in diffs:
        print(diff, file=sys.stderr)
    if diffs:
        print(f"{args.doc} is stale: run python scripts/gen_cli_docs.py", file=sys.stderr)
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
