"""Text shown in one line: whitespace collapsed, and cut to a width."""

from __future__ import annotations


def one_line(text: str | None) -> str:
    """Collapse whitespace, newlines included, so a field fits on one line."""
    return " ".join((text or "").split())


def shorten(text: str | None, width: int) -> str:
    """``text`` on one line, cut to at most ``width`` characters with an ellipsis."""
    flat = one_line(text)
    return flat if len(flat) <= width else flat[: width - 1].rstrip() + "…"
