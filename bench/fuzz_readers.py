#!/usr/bin/env python3
"""Mutation fuzzer for bienc's readers: nothing about a file may make read_file raise.

Starts from valid seeds of every kind bienc reads (text, Markdown, HTML, PDF, JSONL, CSV,
TSV, Parquet), mutates them (bit flips, truncation, random insertions, splices between
seeds, byte-order marks, NULs), writes each to a file and reads it. A "crash" is any
exception escaping read_file, or an event that is not a Document, Skipped or Note.
Seeded and time-bounded; prints executions, crashes and executions per kind.

    python bench/fuzz_readers.py [--seconds 600] [--seed 0]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bienc_cli.inputs.documents import Document, FileEntry, Note, Skipped  # noqa: E402
from bienc_cli.inputs.readers import read_file  # noqa: E402
from bienc_cli.inputs.tables import TableOptions  # noqa: E402


def seeds() -> dict[str, bytes]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tests.test_readers import make_pdf

    parquet = io.BytesIO()
    pq.write_table(pa.table({"id": ["a", "b"], "text": ["first row", None], "n": [1, 2]}), parquet)
    return {
        ".txt": "Plain text.\nSecond line with café.\n".encode(),
        ".md": b"# Title\n\nSome *markdown* with `code` and a [link](x).\n",
        ".html": b"<html><head><title>T</title><style>p{}</style></head><body><p>Hi &amp; bye</p>"
        b"<script>x()</script><div>more</div></body></html>",
        ".pdf": make_pdf(["Hello from a PDF page", "Second page"]),
        ".jsonl": b'{"id": "1", "text": "one"}\n{"id": "2", "text": "two", "lang": "en"}\n',
        ".csv": b'id,text\n1,hello\n2,"quoted, text"\n',
        ".tsv": b"id\ttext\n1\thello\n",
        ".parquet": parquet.getvalue(),
    }


def mutate(data: bytes, pool: list[bytes], rng: random.Random) -> bytes:
    data = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        op = rng.randrange(7)
        if op == 0 and data:  # flip bits
            i = rng.randrange(len(data))
            data[i] ^= 1 << rng.randrange(8)
        elif op == 1 and data:  # truncate
            del data[rng.randrange(len(data)) :]
        elif op == 2:  # insert random bytes
            i = rng.randrange(len(data) + 1)
            data[i:i] = os.urandom(rng.randint(1, 64))
        elif op == 3:  # splice from another seed
            other = rng.choice(pool)
            if other:
                a = rng.randrange(len(other))
                data[rng.randrange(len(data) + 1) :] = other[a : a + rng.randint(1, 200)]
        elif op == 4:  # byte-order marks and NULs
            data[0:0] = rng.choice(
                [b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff", b"\x00", b"\xff\xfe\x00\x00"]
            )
        elif op == 5 and data:  # duplicate a slice (long lines, repeated rows)
            a = rng.randrange(len(data))
            data[a:a] = data[a : a + rng.randint(1, 100)] * rng.randint(2, 50)
        elif op == 6:  # random control or high bytes
            i = rng.randrange(len(data) + 1)
            data[i:i] = bytes(
                rng.choice([0, 7, 27, 128, 255, 0xC3, 0xE2]) for _ in range(rng.randint(1, 9))
            )
    return bytes(data)


def run(seconds: float, seed: int, folder: Path) -> dict:
    rng = random.Random(seed)
    corpus = seeds()
    pool = list(corpus.values())
    executions: Counter[str] = Counter()
    crashes: list[dict] = []
    deadline = time.monotonic() + seconds
    options = [TableOptions(), TableOptions(text_columns=("text",), id_column="id")]
    while time.monotonic() < deadline:
        suffix = rng.choice(list(corpus))
        data = mutate(corpus[suffix], pool, rng)
        path = folder / f"case{suffix}"
        path.write_bytes(data)
        stat = path.stat()
        entry = FileEntry(str(path), stat.st_size, stat.st_mtime_ns, str(folder))
        try:
            for event in read_file(entry, rng.choice(options)):
                if not isinstance(event, (Document, Skipped, Note)):
                    raise TypeError(f"unexpected event {event!r}")
        except Exception:
            crashes.append(
                {
                    "suffix": suffix,
                    "bytes": data[:2000].hex(),
                    "error": traceback.format_exc(limit=3),
                }
            )
        executions[suffix] += 1
    return {
        "executions": sum(executions.values()),
        "crashes": len(crashes),
        "by_kind": dict(executions),
        "first_crashes": crashes[:3],
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = run(args.seconds, args.seed, Path(tmp))
    print(json.dumps(result, indent=2))
    return 1 if result["crashes"] else 0


if __name__ == "__main__":
    sys.exit(main())
