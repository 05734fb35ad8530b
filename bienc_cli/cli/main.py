"""The `bienc` entry point: the table of commands, and an app holding only the one that runs.

Each command lives in its own module (cli/index.py, cli/query.py, ...) and imports what the
commands share from cli/options.py, never this module: the table below is the one place
that knows every command, and the order `bienc --help` lists them in.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import sys
from collections.abc import Iterable, Iterator
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from bienc_cli import __version__
from bienc_cli.cli.options import error

# Command name -> (module, function). Importing a module costs only its light imports; the
# library work each command does is imported inside the command.
COMMANDS = {
    "index": ("bienc_cli.cli.index", "index"),
    "query": ("bienc_cli.cli.query", "query"),
    "info": ("bienc_cli.cli.info", "info"),
    "eval": ("bienc_cli.cli.eval", "eval_command"),
    "cluster": ("bienc_cli.cli.cluster", "cluster"),
    "dedup": ("bienc_cli.cli.dedup", "dedup"),
    "verify": ("bienc_cli.cli.verify", "verify"),
}

# Commands that write nothing but stdout and stderr, so that they may exit without teardown.
_READ_ONLY = {"query"}

# The click that typer raises from: typer 0.27 bundles its own (typer._click), older ones use
# the click package.
_click_errors = sys.modules[typer.BadParameter.__module__]


class _OneLineUsageError(_click_errors.UsageError):  # type: ignore[name-defined,misc]
    """click's usage error, shown as bienc shows every error: one line on stderr."""

    def show(self, file: Any = None) -> None:
        message = self.format_message().rstrip(".")
        hint = f" (see {self.ctx.command_path} --help)" if self.ctx is not None else ""
        error(message[:1].lower() + message[1:] + hint)


@contextlib.contextmanager
def _one_line_usage_errors() -> Iterator[None]:
    try:
        yield
    except (_OneLineUsageError, _NoArgsIsHelp):
        raise  # the help text itself (`bienc` alone) stays as it is
    except _click_errors.UsageError as exc:
        raise _OneLineUsageError(exc.format_message(), exc.ctx) from None


_NoArgsIsHelp = getattr(_click_errors, "NoArgsIsHelpError", _OneLineUsageError)


class _Group(TyperGroup):
    """The bienc group: a bad option or argument (out of range, unknown, missing) is one
    line on stderr, `bienc: error: ...`, like the library's errors, not click's usage block."""

    def make_context(self, info_name: Any, args: Any, parent: Any = None, **extra: Any) -> Any:
        with _one_line_usage_errors():
            return super().make_context(info_name, args, parent, **extra)

    def invoke(self, ctx: Any) -> Any:
        with _one_line_usage_errors():  # the command's own options are parsed in here
            return super().invoke(ctx)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"bienc {__version__}")
        raise typer.Exit()


def main_options(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
    verbose: Annotated[
        int, typer.Option("--verbose", "-v", count=True, help="Log more (-vv: debug).")
    ] = 0,
) -> None:
    """Search, deduplicate and cluster local documents by meaning, with a bi-encoder."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="bienc: %(levelname)s: %(name)s: %(message)s")


def build(names: Iterable[str] | None = None) -> typer.Typer:
    """An app holding the commands ``names`` (default: all), in the table's order."""
    app = typer.Typer(
        cls=_Group,
        name="bienc",
        help="Search, deduplicate and cluster local documents by meaning, with a bi-encoder.",
        no_args_is_help=True,
        add_completion=False,
        context_settings={"help_option_names": ["-h", "--help"]},
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
    )
    app.callback()(main_options)
    wanted = set(COMMANDS if names is None else names)
    for name, (module, function) in COMMANDS.items():
        if name in wanted:
            app.command(name)(getattr(importlib.import_module(module), function))
    return app


def __getattr__(name: str) -> Any:
    """``app``: the whole app, built on first use (for tests and library callers)."""
    if name == "app":
        return build()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main() -> None:
    """The `bienc` entry point.

    typer turns every registered command's signature into click options before it runs
    any of them (~25 ms here, a tenth of a cold query), and importing a command's module
    costs too, so a run that names a command builds an app holding only that one; anything
    else (no command, top-level --help, an unknown name) gets the whole app.
    """
    name = _command_name(sys.argv[1:])
    if name not in COMMANDS:
        build()()
        return
    single = build([name])
    if name not in _READ_ONLY:
        single()
        return
    try:
        single()
    except SystemExit as exit:
        # Nothing left to clean up: skip the interpreter's teardown (freeing the model
        # session, the graph and every module: ~40 ms of a ~300 ms cold query here).
        code = exit.code if isinstance(exit.code, int) else 0 if exit.code is None else 1
        if isinstance(exit.code, str):
            sys.stderr.write(exit.code + "\n")
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except OSError:  # the reader went away (`| head`), as handle_errors allows
                pass
        _leave(code)


def _leave(code: int) -> None:
    """Exit at once, without teardown (tests replace it: it would end pytest too)."""
    os._exit(code)


def _command_name(args: list[str]) -> str | None:
    """The command a command line names: its first word that is not an option."""
    for arg in args:
        if arg == "--" or arg in ("-h", "--help"):
            return None
        if not arg.startswith("-"):
            return arg
    return None
