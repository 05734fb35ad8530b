"""Chunking with the default model's real tokenizer (fast: no model weights are loaded)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bienc_cli.encoding.chunking import Chunker
from bienc_cli.encoding.model import load_tokenizer, resolve_model


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(resolve_model(None))


def _tokens(tokenizer, text):
    return len(tokenizer.encode(text, add_special_tokens=False).ids)


def test_short_text_is_one_chunk(tokenizer):
    chunks = Chunker(tokenizer, 254, 32).chunk("  Hello world.\nSecond line.\n")
    assert len(chunks) == 1
    chunk = chunks[0]
    assert chunk.text == "Hello world.\nSecond line."
    assert (chunk.char_start, chunk.line_start, chunk.line_end) == (2, 1, 2)


def test_for_model_leaves_room_for_special_tokens(tokenizer):
    assert Chunker.for_model(tokenizer, 256, 0).max_tokens == 254


def test_long_text_fits_and_keeps_offsets_and_lines(tokenizer):
    paragraphs = [
        f"Paragraph {i} talks about topic number {i} at some length. " * 6 for i in range(40)
    ]
    text = "\n\n".join(paragraphs)
    chunks = Chunker(tokenizer, 64, 8).chunk(text)
    assert len(chunks) > 10
    for chunk in chunks:
        assert text[chunk.char_start : chunk.char_end] == chunk.text
        assert _tokens(tokenizer, chunk.text) <= 64
        assert chunk.line_start == text.count("\n", 0, chunk.char_start) + 1
        assert chunk.line_end == text.count("\n", 0, chunk.char_end - 1) + 1
    assert [c.index for c in chunks] == list(range(len(chunks)))


def test_chunks_cover_every_word_in_order(tokenizer):
    words = [f"w{i}" for i in range(3000)]
    text = " ".join(words)
    chunks = Chunker(tokenizer, 50, 10).chunk(text)
    covered = " ".join(c.text for c in chunks).split()
    assert [w for w in dict.fromkeys(covered)] == words  # overlap repeats words, never drops them
    assert all(c.text.split()[0].startswith("w") for c in chunks)  # cuts fall between words


def test_overlap_repeats_the_tail_of_the_previous_chunk(tokenizer):
    text = " ".join(f"token{i}" for i in range(400))
    chunks = Chunker(tokenizer, 40, 10).chunk(text)
    for before, after in zip(chunks, chunks[1:]):
        assert after.char_start < before.char_end  # they overlap
        assert after.char_start > before.char_start  # and always move forward


def test_prefers_paragraph_breaks(tokenizer):
    first = "alpha beta gamma delta. " * 8
    second = "epsilon zeta eta theta. " * 8
    text = first.strip() + "\n\n" + second.strip()
    chunks = Chunker(tokenizer, 60, 0).chunk(text)
    assert chunks[0].text == first.strip()


def test_a_word_longer_than_a_chunk_is_still_split(tokenizer):
    text = "x" * 5000 + " end"  # one giant "word"
    chunks = Chunker(tokenizer, 16, 0).chunk(text)
    assert chunks and all(_tokens(tokenizer, c.text) <= 16 for c in chunks)


def test_whitespace_only_gives_no_chunks(tokenizer):
    assert Chunker(tokenizer, 32, 0).chunk(" \n\t \n") == []


def test_rejects_bad_settings(tokenizer):
    with pytest.raises(ValueError):
        Chunker(tokenizer, 4, 0)
    with pytest.raises(ValueError):
        Chunker(tokenizer, 32, 20)


@settings(max_examples=60, deadline=None)
@given(st.text(min_size=0, max_size=3000), st.integers(min_value=8, max_value=80))
def test_property_chunks_are_exact_slices_within_budget(tokenizer, text, max_tokens):
    chunker = Chunker(tokenizer, max_tokens, max_tokens // 4)
    chunks = chunker.chunk(text)
    for chunk in chunks:
        assert text[chunk.char_start : chunk.char_end] == chunk.text
        assert _tokens(tokenizer, chunk.text) <= max_tokens
        assert 1 <= chunk.line_start <= chunk.line_end
    if _tokens(tokenizer, text):
        assert chunks
    starts = [c.char_start for c in chunks]
    assert starts == sorted(set(starts))
