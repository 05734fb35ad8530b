#!/usr/bin/env python3
"""Cold-start latency and memory of `bienc query` against the naive baseline, in one run.

Both tools index the same folder (SciFact's 5,183 abstracts written one per file, plus the
2,225 BBC News articles: 7,408 documents, about 15,000 bienc chunks), then each query runs
as a new process, as it would in a shell one-liner. Reported: median, min and max wall time
over --runs runs (interleaved, so both see the same machine load), the ratio of medians, and
each process's peak RSS. Also `bienc --help`.

    python bench/query_latency.py [--runs 10] [--out bench/out/latency]
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
QUERIES = [
    "what causes cancer to spread",
    "vitamin D deficiency and bone health",
    "who won the election",
    "mobile phone sales growth",
    "new film awards",
]


def corpus(out: Path) -> Path:
    """SciFact abstracts as files (title + text, as MTEB encodes them) beside BBC News."""
    folder = out / "corpus"
    if (folder / ".complete").exists():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "scifact").mkdir(parents=True)
    with open(DATA / "scifact" / "corpus.jsonl", encoding="utf-8") as fh:
        for line in fh:
            doc = json.loads(line)
            (folder / "scifact" / f"{doc['_id']}.txt").write_text(
                f"{doc['title']}\n\n{doc['text']}\n", encoding="utf-8"
            )
    shutil.copytree(
        DATA / "bbc_news", folder / "bbc_news", ignore=shutil.ignore_patterns("README*")
    )
    (folder / ".complete").touch()
    return folder


def timed(command: list[str]) -> tuple[float, int, int]:
    """Wall seconds, peak RSS in MiB, and exit code of one new process."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(command)} failed: {process.stderr.read().decode()[-500:]}")
    return seconds, usage.ru_maxrss // 1024, process.returncode


def summary(name: str, runs: list[tuple[float, int, int]]) -> dict:
    seconds = [r[0] for r in runs]
    return {
        "name": name,
        "median_s": statistics.median(seconds),
        "min_s": min(seconds),
        "max_s": max(seconds),
        "peak_rss_mib": max(r[1] for r in runs),
        "runs": len(runs),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--out", default=str(REPO / "bench" / "out" / "latency"))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    os.environ["HF_HUB_OFFLINE"] = "1"
    folder = corpus(out)
    bienc = [sys.executable, "-m", "bienc_cli"]
    bienc_index, naive_index = out / "bienc-index", out / "naive-index"
    if not (bienc_index / "CURRENT").exists():
        print("indexing with bienc ...", file=sys.stderr)
        subprocess.run(
            [*bienc, "index", str(folder), "--index", str(bienc_index), "-q"], check=True
        )
    if not (naive_index / "index.bin").exists():
        print("indexing with the baseline ...", file=sys.stderr)
        subprocess.run(
            [sys.executable, str(BASELINE), "index", str(folder), str(naive_index)], check=True
        )
    info = json.loads(
        subprocess.run(
            [*bienc, "info", "--index", str(bienc_index), "--json", "--no-stale"],
            capture_output=True, text=True, check=True,
        ).stdout
    )  # fmt: skip

    # `pip install .` compiles bytecode at install time; an editable install under
    # PYTHONDONTWRITEBYTECODE (as on these machines) would recompile bienc on every run.
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "bienc_cli")], check=True)
    # The installed console script, as a user runs it (python -m adds runpy's own imports).
    # The one beside this interpreter (a virtual environment need not be activated).
    beside = Path(sys.executable).with_name("bienc")
    script = str(beside) if beside.exists() else shutil.which("bienc") or "bienc"
    results = {"bienc query": [], "naive query": [], "bienc --help": []}
    for i in range(args.runs):
        text = QUERIES[i % len(QUERIES)]
        results["bienc query"].append(timed([script, "query", text, "--index", str(bienc_index)]))
        results["naive query"].append(
            timed([sys.executable, str(BASELINE), "query", str(naive_index), text])
        )
        results["bienc --help"].append(timed([script, "--help"]))
    rows = [summary(name, runs) for name, runs in results.items()]
    print(f"corpus: {info['documents']} documents, {info['chunks']} bienc chunks, backend "
          f"{info.get('backend', 'see manifest')}; {args.runs} cold runs each, interleaved")  # fmt: skip
    print(f"{'command':<14} {'median':>8} {'min':>8} {'max':>8} {'peak RSS':>9}")
    for row in rows:
        print(
            f"{row['name']:<14} {row['median_s']:>7.3f}s {row['min_s']:>7.3f}s "
            f"{row['max_s']:>7.3f}s {row['peak_rss_mib']:>6} MiB"
        )
    ratio = rows[1]["median_s"] / rows[0]["median_s"]
    print(f"naive / bienc query (ratio of medians): {ratio:.1f}x")
    (out / "results.json").write_text(
        json.dumps({"rows": rows, "ratio": ratio, "info": info}, indent=2)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
