"""Token-aware chunking: split a document so that no chunk exceeds the model's sequence length.

Chunks are cut with the model's own tokenizer, so nothing is silently truncated by the
encoder. Cuts prefer, in order: a blank line, a line break, the end of a sentence, any space
between words; only a single word longer than a whole chunk is cut inside the word. Each
chunk keeps its character offsets and 1-based line range in the document's text.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import tokenizers

# Long documents are tokenised a window at a time so that a 50 MB file never needs all its
# token offsets in memory at once.
_WINDOW_CHARS = 200_000
_SENTENCE_END = (".", "!", "?", ";", ":", "。", "！", "？")


@dataclass(frozen=True, slots=True)
class Chunk:
    index: int  # 0-based position in the document
    text: str
    char_start: int  # offsets into the document text: text == doc[char_start:char_end]
    char_end: int
    line_start: int  # 1-based, inclusive
    line_end: int
    n_tokens: int  # tokens without the special tokens the encoder adds


def chunk_tokens(tokenizer: tokenizers.Tokenizer, max_seq_length: int) -> int:
    """How many tokens of text a chunk holds: the model's input less its special tokens.
    The overlap can be at most half of it."""
    return max_seq_length - tokenizer.post_processor.num_special_tokens_to_add(False)


class Chunker:
    """Splits text into chunks of at most ``max_tokens`` tokens, overlapping by ``overlap``."""

    def __init__(self, tokenizer: tokenizers.Tokenizer, max_tokens: int, overlap: int = 0):
        if max_tokens < 8:
            raise ValueError("max_tokens must be at least 8")
        if not 0 <= overlap <= max_tokens // 2:
            raise ValueError("overlap must be between 0 and half of max_tokens")
        self.tokenizer = tokenizer
        self.max_tokens = max_tokens
        self.overlap = overlap

    @classmethod
    def for_model(cls, tokenizer: tokenizers.Tokenizer, max_seq_length: int, overlap: int):
        """A chunker whose chunks fit ``max_seq_length`` once the special tokens are added."""
        return cls(tokenizer, chunk_tokens(tokenizer, max_seq_length), overlap)

    def chunk(self, text: str) -> list[Chunk]:
        line_starts = [0] + [i + 1 for i, ch in enumerate(text) if ch == "\n"]
        chunks: list[Chunk] = []
        for start, end, n_tokens in self._spans(text):
            piece = text[start:end]
            chunks.append(
                Chunk(
                    index=len(chunks),
                    text=piece,
                    char_start=start,
                    char_end=end,
                    line_start=bisect.bisect_right(line_starts, start),
                    line_end=bisect.bisect_right(line_starts, max(start, end - 1)),
                    n_tokens=n_tokens,
                )
            )
        return chunks

    def _spans(self, text: str) -> Iterator[tuple[int, int, int]]:
        """(char_start, char_end, n_tokens) of each chunk, in order."""
        window_start, size = 0, _WINDOW_CHARS
        while window_start < len(text):
            window_end = min(len(text), window_start + size)
            if window_end < len(text):  # do not cut the window inside a word
                cut = max(text.rfind(c, window_start + size // 2, window_end) for c in " \n")
                window_end = cut + 1 if cut > 0 else window_end
            offsets = self._offsets(text, window_start, window_end)
            last = window_end >= len(text)
            position = 0
            while position < len(offsets):
                if len(offsets) - position <= self.max_tokens:
                    if not last:  # the rest joins the next window, so it is cut with context
                        break
                    yield from self._checked(text, offsets[position][0], offsets[-1][1])
                    position = len(offsets)
                    break
                cut = self._best_cut(text, offsets, position)
                yield from self._checked(text, offsets[position][0], offsets[cut - 1][1])
                position = self._next_start(offsets, position, cut, text)
            if position >= len(offsets):
                window_start, size = window_end, _WINDOW_CHARS
            elif position == 0 and offsets[0][0] == window_start:
                size *= 2  # a window too sparse in tokens to fill one chunk: widen it
            else:
                window_start, size = offsets[position][0], _WINDOW_CHARS

    def _offsets(self, text: str, start: int, end: int) -> list[tuple[int, int]]:
        encoding = self.tokenizer.encode(text[start:end], add_special_tokens=False)
        return [(start + a, start + b) for a, b in encoding.offsets if b > a]

    def _best_cut(self, text: str, offsets: list[tuple[int, int]], position: int) -> int:
        """Token index (exclusive) where the chunk starting at ``position`` should end."""
        limit = position + self.max_tokens
        earliest = position + max(1, self.max_tokens // 2)
        best, best_rank = limit, -1
        for cut in range(limit, earliest - 1, -1):
            rank = self._boundary_rank(text, offsets[cut - 1][1], offsets[cut][0])
            if rank > best_rank:
                best, best_rank = cut, rank
                if rank == 4:
                    break
        return best

    @staticmethod
    def _boundary_rank(text: str, end_prev: int, start_next: int) -> int:
        gap = text[end_prev:start_next]
        if "\n\n" in gap:
            return 4
        if "\n" in gap:
            return 3
        if gap and text[end_prev - 1] in _SENTENCE_END:
            return 2
        if gap:
            return 1  # between words
        return 0  # inside a word: only when a "word" is longer than a chunk

    def _next_start(
        self, offsets: list[tuple[int, int]], position: int, cut: int, text: str
    ) -> int:
        """First token of the next chunk: up to ``overlap`` tokens back, starting a line if
        one starts in the overlap, else a word."""
        start = max(position + 1, cut - self.overlap)
        for i in range(start, cut):
            if "\n" in text[offsets[i - 1][1] : offsets[i][0]]:
                return i
        while start < cut and offsets[start][0] == offsets[start - 1][1]:
            start += 1  # a word continues here; begin the overlap at the next word
        return start

    def _checked(self, text: str, start: int, end: int) -> Iterator[tuple[int, int, int]]:
        """Re-tokenise the chunk on its own; split it again in the rare case it grew."""
        piece = text[start:end]
        offsets = self.tokenizer.encode(piece, add_special_tokens=False).offsets
        n_tokens = sum(1 for a, b in offsets if b > a)
        if n_tokens <= self.max_tokens or end - start < 2:
            yield start, end, n_tokens
            return
        middle = start + (end - start) // 2
        yield from self._checked(text, start, middle)
        yield from self._checked(text, middle, end)
