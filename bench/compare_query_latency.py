#!/usr/bin/env python3
"""Cold `bienc query` time of this checkout against an earlier commit, in one run.

For a change that must not make a cold query slower (a refactor, a new import): both trees
index the repository's sample_corpus/ with the real default model (each with its own code,
so a format change between them does not matter), then each query runs as a new process,
alternating the two trees so both see the same machine load. Prints the median, min and max
wall time per tree and the ratio of medians, with the CPU's vector flags.

    python bench/compare_query_latency.py --base f2f1064 [--runs 15]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from query_latency import timed  # noqa: E402  (bench/ is not a package)

REPO = Path(__file__).resolve().parent.parent
QUERY = "why is Mars red"


def cpu_flags() -> str:
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    flags = sorted(set(re.findall(r"\b(avx512\w*|avx2|amx\w*)\b", text)))
    return " ".join(flags) or "unknown"


def bienc(tree: Path) -> list[str]:
    """The command line that runs ``tree``'s bienc (with PYTHONPATH set to it)."""
    return [sys.executable, "-m", "bienc_cli"]


def run(tree: Path, args: list[str]) -> None:
    env = dict(os.environ, PYTHONPATH=str(tree), HF_HUB_OFFLINE="1")
    subprocess.run([*bienc(tree), *args], env=env, check=True, capture_output=True)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--base", required=True, help="the commit to compare with")
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bienc-latency-") as tmp:
        base = Path(tmp) / "base"
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "add", "--detach", str(base), args.base],
            check=True, capture_output=True,
        )  # fmt: skip
        try:
            trees = {"base " + args.base: base, "this checkout": REPO}
            indexes = {}
            for name, tree in trees.items():
                indexes[name] = Path(tmp) / f"idx-{len(indexes)}"
                run(tree, ["index", str(REPO / "sample_corpus"), "-i", str(indexes[name]), "-q"])
            times: dict[str, list[float]] = {name: [] for name in trees}
            for _ in range(args.runs):
                for name, tree in trees.items():
                    os.environ["PYTHONPATH"] = str(tree)
                    command = [*bienc(tree), "query", QUERY, "-i", str(indexes[name]), "-k", "1"]
                    times[name].append(timed(command)[0])
        finally:
            os.environ.pop("PYTHONPATH", None)
            subprocess.run(
                ["git", "-C", str(REPO), "worktree", "remove", "--force", str(base)],
                capture_output=True,
            )  # fmt: skip
    print(f"cold `bienc query`, {args.runs} alternating runs each; CPU: {cpu_flags()}")
    for name, seconds in times.items():
        print(
            f"  {name:>22}: median {statistics.median(seconds):.3f} s "
            f"(min {min(seconds):.3f}, max {max(seconds):.3f})"
        )
    base_median, new_median = (statistics.median(s) for s in times.values())
    print(f"  ratio this/base: {new_median / base_median:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
