#!/usr/bin/env python3
"""Indexing throughput of `bienc index` against the naive baseline, on the same documents.

The first --docs SciFact abstracts are written one per file (title and text). Each
repetition runs, interleaved so that all see the same machine load:

- the baseline: `naive_st_hnsw.py index` (sentence-transformers, one vector per document,
  truncated at 256 tokens);
- `bienc index --rebuild` with the default backend (ONNX Runtime): everything is read,
  chunked (all of each document, not just its first 256 tokens) and encoded again; the
  model's one-time ONNX export is already in the index and is timed separately;
- `bienc index --rebuild --backend sentence-transformers`;
- `bienc index --rebuild` on an index made with `--backend onnx-int8`.

Reported: documents per second (median over --reps, with min and max), chunks per second
for bienc, the ratios to the baseline, and peak RSS. Then the work behind the figures: the
tokens each one encodes (bienc: every chunk of every document; the baseline: the first 256
tokens of each), and the rate of the fp32 ONNX run in GFLOP/s of transformer arithmetic
against the float32 matrix-multiply rate numpy reaches on this machine in the same run.

    python bench/index_throughput.py [--docs 400] [--reps 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data"
BASELINE = REPO.parent / "shared" / "baseline" / "naive_st_hnsw.py"


def documents(out: Path, n: int) -> Path:
    folder = out / f"scifact-{n}"
    if (folder / ".complete").exists():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    with open(DATA / "scifact" / "corpus.jsonl", encoding="utf-8") as fh:
        for _, line in zip(range(n), fh):
            doc = json.loads(line)
            (folder / f"{doc['_id']}.txt").write_text(
                f"{doc['title']}\n\n{doc['text']}\n", encoding="utf-8"
            )
    (folder / ".complete").touch()
    return folder


def run(command: list[str]) -> tuple[float, int]:
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(command)} failed: {process.stderr.read().decode()[-800:]}")
    return seconds, usage.ru_maxrss // 1024


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--docs", type=int, default=400)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--out", default=str(REPO / "bench" / "out" / "throughput"))
    args = parser.parse_args()
    os.environ["HF_HUB_OFFLINE"] = "1"
    out = Path(args.out)
    folder = documents(out, args.docs)
    bienc = [sys.executable, "-m", "bienc_cli"]
    onnx_index, st_index, int8_index = out / "bienc-onnx", out / "bienc-st", out / "bienc-int8"

    # One-time costs, timed apart: the first run exports the model to ONNX.
    shutil.rmtree(onnx_index, ignore_errors=True)
    first, _ = run([*bienc, "index", str(folder), "--index", str(onnx_index), "-q"])
    run(
        [
            *bienc,
            "index",
            str(folder),
            "--index",
            str(st_index),
            "-q",
            "--backend",
            "sentence-transformers",
        ]
    )
    shutil.rmtree(int8_index, ignore_errors=True)
    shutil.copytree(onnx_index / "models", int8_index / "models")  # quantises the same export
    run([*bienc, "index", str(folder), "--index", str(int8_index), "-q", "--backend", "onnx-int8"])
    chunks = json.loads(
        subprocess.run([*bienc, "info", "--index", str(onnx_index), "--json", "--no-stale"],
                       capture_output=True, text=True, check=True).stdout
    )["chunks"]  # fmt: skip

    timings: dict[str, list[tuple[float, int]]] = {
        "naive": [],
        "bienc onnx": [],
        "bienc st": [],
        "bienc int8": [],
    }
    for _ in range(args.reps):
        shutil.rmtree(out / "naive", ignore_errors=True)
        timings["naive"].append(
            run([sys.executable, str(BASELINE), "index", str(folder), str(out / "naive")])
        )
        timings["bienc onnx"].append(
            run([*bienc, "index", "--index", str(onnx_index), "--rebuild", "-q"])
        )
        timings["bienc st"].append(
            run([*bienc, "index", "--index", str(st_index), "--rebuild", "-q"])
        )
        timings["bienc int8"].append(
            run([*bienc, "index", "--index", str(int8_index), "--rebuild", "-q"])
        )

    print(f"{args.docs} SciFact documents ({chunks} bienc chunks), {args.reps} runs each, interleaved;"
          f" first bienc run with the ONNX export: {first:.1f}s")  # fmt: skip
    print(
        f"{'':<11} {'docs/s':>7} {'min':>7} {'max':>7} {'chunks/s':>9} {'vs naive':>9} {'peak RSS':>9}"
    )
    naive_rate = statistics.median(args.docs / s for s, _ in timings["naive"])
    for name, runs in timings.items():
        rates = [args.docs / s for s, _ in runs]
        rate = statistics.median(rates)
        per_chunk = (
            "" if name == "naive" else f"{statistics.median(chunks / s for s, _ in runs):9.1f}"
        )
        print(f"{name:<11} {rate:7.1f} {min(rates):7.1f} {max(rates):7.1f} {per_chunk:>9} "
              f"{rate / naive_rate:8.2f}x {max(m for _, m in runs):>5} MiB")  # fmt: skip
    onnx_seconds = statistics.median(s for s, _ in timings["bienc onnx"])
    work(folder, onnx_index, onnx_seconds)
    return 0


def work(folder: Path, index: Path, seconds: float) -> None:
    """Tokens encoded by each, and the fp32 ONNX run's arithmetic rate against numpy's sgemm."""
    import numpy as np

    sys.path.insert(0, str(REPO))
    from bienc_cli.encoding.model import load_tokenizer
    from bienc_cli.query.search import index_model
    from bienc_cli.store import generations as store

    generation = store.open_index(index)
    model = index_model(generation, backend="sentence-transformers")
    tokenizer = load_tokenizer(model)
    texts = generation.read_sidecar(columns=["text"])["text"].to_pylist()
    chunk_lengths = [min(len(e.ids), 256) for e in tokenizer.encode_batch(texts)]
    documents = [p.read_text(encoding="utf-8")[:4000] for p in sorted(folder.glob("*.txt"))]
    naive_lengths = [min(len(e.ids), 256) for e in tokenizer.encode_batch(documents)]
    config = json.loads((Path(model.path) / "config.json").read_text())
    flops = sum(transformer_flops(n, config) for n in chunk_lengths)
    sgemm = sgemm_rate(np)
    print(
        f"tokens encoded: bienc {sum(chunk_lengths):,} ({len(chunk_lengths)} chunks), naive "
        f"{sum(naive_lengths):,} ({len(naive_lengths)} documents truncated at 256 tokens): "
        f"{sum(chunk_lengths) / sum(naive_lengths):.2f}x"
    )
    print(
        f"fp32 ONNX run: {flops / seconds / 1e9:.0f} GFLOP/s of transformer arithmetic "
        f"(whole run, reading included); numpy float32 matmul on this machine: "
        f"{sgemm / 1e9:.0f} GFLOP/s ({flops / seconds / sgemm:.0%} of it)"
    )


def transformer_flops(length: int, config: dict) -> float:
    """Multiply-adds x 2 of one BERT-style encoder pass over ``length`` tokens."""
    hidden, inner = config["hidden_size"], config["intermediate_size"]
    dense = length * 2 * (4 * hidden * hidden + 2 * hidden * inner)  # QKV, output, FFN
    attention = 2 * 2 * length * length * hidden  # scores and weighted sum
    return config["num_hidden_layers"] * (dense + attention)


def sgemm_rate(np) -> float:
    """Median float32 matmul rate over 7 runs of a (8192 x 384) x (384 x 1536) product."""
    a = np.random.default_rng(0).random((8192, 384), dtype=np.float32)
    b = np.random.default_rng(1).random((384, 1536), dtype=np.float32)
    a @ b
    times = []
    for _ in range(7):
        started = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - started)
    return 2 * 8192 * 384 * 1536 / statistics.median(times)


if __name__ == "__main__":
    sys.exit(main())
