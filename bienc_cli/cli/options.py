"""What the commands share: option types, the source-reading bundle, and error handling.

Library errors become a one-line message and an exit code here, and only here. Imports stay
light: `bienc --help` must not pay for numpy, pyarrow or torch.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from bienc_cli.errors import BiencError, ExitStatus, UsageError

F = TypeVar("F", bound=Callable[..., Any])

# The largest --ef: hnswlib takes a C integer (a larger Python int is a TypeError), and an ef
# beyond the number of chunks searches no wider.
MAX_EF = 2**31 - 1


def not_nan(value: float | None) -> float | None:
    """A float option's callback: click's ranges let NaN through (every comparison is false)."""
    if value is not None and math.isnan(value):
        raise typer.BadParameter("not a number")
    return value


IndexOption = Annotated[
    Path | None,
    typer.Option(
        "--index",
        "-i",
        help="Index folder. [default: $BIENC_INDEX, else ./.bienc]",
        show_default=False,
    ),
]
NullOption = Annotated[
    bool,
    typer.Option(
        "--null", "-0", help="NUL-separated paths (stdin for index, output for query: -f paths)."
    ),
]


def index_root(index_dir: Path | None) -> Path:
    """The index folder a command works on: --index, else $BIENC_INDEX, else ./.bienc.

    Refused (UsageError) when its name is not UTF-8: ONNX Runtime and hnswlib open the
    index's files by a str name that must encode to UTF-8, so such an index could be neither
    written nor read (source files with such names are fine)."""
    from bienc_cli.store.layout import index_path

    root = index_path(str(index_dir) if index_dir else None)
    try:
        os.fsencode(str(root.absolute())).decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(  # error() escapes the name
            f"--index {root}: the folder's path is not valid UTF-8, which "
            "the index's files need; give an --index whose path is UTF-8"
        ) from None
    return root


def choose_format(fmt: str | None, formats: Sequence[str], *, to_terminal: bool = True) -> str:
    """The --format asked for, else ``table`` when the output is a terminal and ``tsv`` when
    it is a pipe or a file; UsageError for a name not in ``formats``."""
    fmt = fmt or ("table" if to_terminal and sys.stdout.isatty() else "tsv")
    if fmt not in formats:
        raise UsageError(f"unknown --format {fmt!r}; choose one of {', '.join(formats)}")
    return fmt


def error(message: str) -> None:
    """One line on stderr, whatever the message names (escaped: no raw control characters)."""
    from bienc_cli.ui.output import escape_text

    sys.stderr.write(f"bienc: error: {escape_text(message)}\n")


def handle_errors(command: F) -> F:
    """Turn library errors into one line on stderr and a documented exit code."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except BiencError as exc:
            error(str(exc))
            raise typer.Exit(int(exc.exit_status)) from None
        except KeyboardInterrupt:
            error("interrupted; the index is unchanged")
            raise typer.Exit(int(ExitStatus.INTERRUPTED)) from None
        except BrokenPipeError:
            # The reader went away (`bienc query ... | head -1`): stop quietly, like grep.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            raise typer.Exit(int(ExitStatus.OK)) from None

    return wrapper  # type: ignore[return-value]


def parse_size(text: str) -> int:
    """'20M' -> 20971520. Accepts plain bytes and K/M/G suffixes (powers of 1024)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmMgG]?)[iI]?[bB]?\s*", text)
    if not match:
        raise UsageError(f"--max-file-size {text!r}: not a size; use e.g. 500K, 20M or 1G")
    number, unit = float(match.group(1)), match.group(2).upper()
    size = int(number * {"": 1, "K": 2**10, "M": 2**20, "G": 2**30}[unit])
    if size < 1:  # not "no limit", as 0 is to some tools: it would skip every file
        raise UsageError(f"--max-file-size {text!r}: give at least 1 byte, e.g. 500K, 20M or 1G")
    return size


def split_stdin(sources: list[str] | None, *, null: bool) -> tuple[list[str], list[str]]:
    """SOURCE arguments, and the paths read from stdin when one of them is `-`."""
    from bienc_cli.inputs.sources import read_path_list

    sources = list(sources or [])
    if "-" not in sources:
        return sources, []
    sources.remove("-")
    return sources, read_path_list(sys.stdin.buffer, null_separated=null)


# -- the source-reading options: one bundle for index, dedup and cluster ---------------------

# Each option of the bundle: its parameter name and its click declaration. index, dedup and
# cluster read sources by the same rules, so they take exactly these (tests/test_cli.py).
SOURCE_OPTIONS: dict[str, Any] = {
    "text_column": Annotated[
        list[str] | None,
        typer.Option(
            "--text-column", help="Table column(s) holding the text, joined in order (repeatable)."
        ),
    ],
    "id_column": Annotated[
        str | None, typer.Option("--id-column", help="Table column holding the row id.")
    ],
    "include": Annotated[
        list[str] | None,
        typer.Option("--include", help="Only read files matching this glob (repeatable)."),
    ],
    "exclude": Annotated[
        list[str] | None,
        typer.Option("--exclude", help="Skip files and folders matching this glob (repeatable)."),
    ],
    "hidden": Annotated[
        bool | None,
        typer.Option("--hidden/--no-hidden", help="Read hidden files and folders too, or not."),
    ],
    "no_ignore": Annotated[
        bool | None,
        typer.Option(
            "--no-ignore/--ignore", help="Do not honour .gitignore and .biencignore, or do."
        ),
    ],
    "follow": Annotated[
        bool | None,
        typer.Option(
            "--follow-symlinks/--no-follow-symlinks",
            "-L",
            help="Follow symlinks found while walking, or not (named ones are followed).",
        ),
    ],
    "max_file_size": Annotated[
        str | None,
        typer.Option("--max-file-size", help="Skip larger files (tables exempt). [default: 20M]"),
    ],
}

# Options a --no-... flag sets back to their default, with the flag that sets them.
_CLEARABLE = {
    "include": ((), "--include"),
    "exclude": ((), "--exclude"),
    "text_columns": ((), "--text-column"),
    "id_column": (None, "--id-column"),
}


@dataclasses.dataclass(frozen=True)
class SourceFlags:
    """The source-reading options as given on the command line (None: not given)."""

    text_column: list[str] | None = None
    id_column: str | None = None
    include: list[str] | None = None
    exclude: list[str] | None = None
    hidden: bool | None = None
    no_ignore: bool | None = None
    follow: bool | None = None
    max_file_size: str | None = None

    def given(self) -> list[str]:
        """The options given, by the name given (``--no-hidden`` for a flag set off)."""
        return [
            _given_name(SOURCE_OPTIONS[f.name], getattr(self, f.name))
            for f in dataclasses.fields(self)
            if getattr(self, f.name) is not None
        ]

    def options(self, clear: Sequence[str] = ()) -> dict[str, Any]:
        """The reading options the user set, in indexing's terms; unset ones are left out so
        that an index's remembered values (or the defaults) hold. ``clear``: options (keys of
        _CLEARABLE) given as --no-include and the like, set back to their defaults."""
        options: dict[str, Any] = {
            "include": tuple(self.include) if self.include else None,
            "exclude": tuple(self.exclude) if self.exclude else None,
            "hidden": self.hidden,
            "use_ignore_files": None if self.no_ignore is None else not self.no_ignore,
            "follow_symlinks": self.follow,
            "max_file_size": parse_size(self.max_file_size) if self.max_file_size else None,
            "text_columns": tuple(self.text_column) if self.text_column else None,
            "id_column": self.id_column,
        }
        given = {k: v for k, v in options.items() if v is not None}
        for name in clear:
            default, flag = _CLEARABLE[name]
            if name in given:
                raise UsageError(f"{flag} and --no-{flag[2:]} contradict each other: give one")
            given[name] = default
        return given


def _given_name(kind: Any, value: Any) -> str:
    declared = kind.__metadata__[0].default  # typer keeps the first name there: "--on/--off"
    on, _, off = declared.partition("/")
    return off if off and value is False else on


def with_source_options(command: F) -> F:
    """Give ``command`` the source-reading options, received as one ``source: SourceFlags``.

    typer reads a command's options from its signature, so the signature shown to typer has
    the options of SOURCE_OPTIONS where ``source`` stands, and the call gathers them back.
    """
    signature = inspect.signature(command, eval_str=True)
    if "source" not in signature.parameters:
        raise TypeError(f"{command.__name__} takes no `source` parameter")
    parameters = []
    for parameter in signature.parameters.values():
        if parameter.name != "source":
            parameters.append(parameter)
            continue
        parameters.extend(
            inspect.Parameter(
                name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None, annotation=kind
            )
            for name, kind in SOURCE_OPTIONS.items()
        )

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        flags = SourceFlags(**{name: kwargs.pop(name, None) for name in SOURCE_OPTIONS})
        return command(*args, source=flags, **kwargs)

    wrapper.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
    return wrapper  # type: ignore[return-value]


# The default a command's ``source`` parameter names: with_source_options always passes it.
UNSET_SOURCE_FLAGS = SourceFlags()
