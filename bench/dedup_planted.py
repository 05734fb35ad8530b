#!/usr/bin/env python3
"""Dedup quality on a folder with planted near-duplicates, through the real model.

Builds a folder of distinct BBC News articles (``../shared/data/bbc_news``; the dataset's own
exact and near copies are left out by a word 5-gram test) and plants copies of some of them,
each changed in one way:

    exact-copy        the same bytes, in another folder
    reformatted-md    the article as Markdown: a heading, paragraphs re-wrapped at 72 columns
    reformatted-html  the article as an HTML page
    reworded-light    about one word in ten replaced by a synonym, one sentence dropped
    reworded-heavy    synonyms, a third of the sentences dropped, paragraphs reordered
    truncated-75      the first 75% of the paragraphs
    truncated-50      the first half of the paragraphs
    excerpt-25        the first quarter of the paragraphs (too little to call a duplicate;
                      reported, not counted as a positive)

A copy and its original are a positive pair; every other pair is a negative (articles of the
same BBC class are the hard negatives: same topic, different story). The folder is indexed
once with the real model (cached in bench/out/planted/), then `bienc dedup --index` runs at
several thresholds and the report gives precision, recall and F1 of the pairs it finds, and
recall per kind of change.

    python bench/dedup_planted.py [--originals 300] [--planted 96] [--seeds 7,11] [--reuse]
"""

from __future__ import annotations

import argparse
import html
import json
import random
import re
import subprocess
import sys
import textwrap
import zlib
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

BBC = REPO.parent / "shared" / "data" / "bbc_news"
OUT = REPO / "bench" / "out" / "planted"
KINDS = (
    "exact-copy",
    "reformatted-md",
    "reformatted-html",
    "reworded-light",
    "reworded-heavy",
    "truncated-75",
    "truncated-50",
    "excerpt-25",
)
NOT_DUPLICATES = {"excerpt-25"}  # planted, but a quarter of an article is not a copy of it

# A hand-made synonym table for news prose; both directions are used.
SYNONYMS = {
    "said": "stated", "company": "firm", "rise": "increase", "big": "large",
    "fell": "dropped", "buy": "purchase", "help": "assist", "show": "reveal",
    "start": "begin", "end": "finish", "new": "fresh", "need": "require",
    "chief": "head", "government": "administration", "people": "individuals",
    "expected": "anticipated", "about": "around", "major": "significant",
    "also": "additionally", "but": "however", "film": "movie", "match": "game",
    "win": "victory", "won": "secured", "lost": "was beaten in", "players": "athletes",
    "minister": "secretary", "plans": "proposals", "music": "songs",
    "figures": "numbers", "sales": "turnover", "market": "marketplace",
    "shares": "stock", "profit": "earnings", "deal": "agreement", "users": "customers",
    "phone": "handset", "technology": "tech", "computer": "PC", "quickly": "rapidly",
    "very": "highly", "many": "numerous", "told": "informed", "added": "went on to say",
    "think": "believe", "several": "a number of", "before": "prior to", "after": "following",
    "because": "since", "however": "but", "year": "twelve months", "month": "four weeks",
    "final": "last", "top": "leading", "record": "all-time", "award": "prize",
    "election": "poll", "party": "group", "leader": "head", "report": "study",
}  # fmt: skip
SYNONYMS |= {v: k for k, v in list(SYNONYMS.items()) if " " not in v and v not in SYNONYMS}


def shingles(text: str, n: int = 5) -> set[int]:
    words = re.findall(r"\w+", text.lower())
    return {zlib.crc32(" ".join(words[i : i + n]).encode()) for i in range(len(words) - n + 1)}


def load_articles(limit: int, rng: random.Random) -> list[tuple[str, str]]:
    """``limit`` distinct articles, (name, text), spread over the five classes.

    BBC News holds exact and near copies of its own (the same story filed twice, a headline
    changed): an article sharing a fifth of its word 5-grams with one already picked is left
    out, so that every pair of originals is a true negative by a test independent of bienc.
    """
    by_class: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for path in sorted(BBC.glob("*/*.txt")):
        text = path.read_bytes().decode("utf-8", errors="replace").replace("\r\n", "\n")
        by_class[path.parent.name].append((f"{path.parent.name}-{path.stem}", text))
    picked: list[tuple[str, str]] = []
    picked_shingles: list[set[int]] = []
    classes = sorted(by_class)
    while len(picked) < limit:
        pool = by_class[classes[len(picked) % len(classes)]]
        name, text = pool.pop(rng.randrange(len(pool)))
        own = shingles(text)
        if any(len(own & other) > 0.2 * min(len(own), len(other)) for other in picked_shingles):
            continue
        picked.append((name, text))
        picked_shingles.append(own)
    return picked


def paragraphs(text: str) -> list[str]:
    return [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]


def sentences(paragraph: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+(?=[A-Z\"'])", paragraph) if s]


def reword(text: str, rng: random.Random, share: float) -> str:
    def swap(match: re.Match[str]) -> str:
        word = match.group(0)
        other = SYNONYMS.get(word.lower())
        if other is None or rng.random() > share * 4:  # ~1 word in 4 has a synonym
            return word
        return other.capitalize() if word[0].isupper() else other

    return re.sub(r"[A-Za-z]+", swap, text)


def drop_sentences(paras: list[str], rng: random.Random, share: float) -> list[str]:
    out = []
    for para in paras:
        kept = [s for s in sentences(para) if rng.random() >= share]
        if kept:
            out.append(" ".join(kept))
    return out or paras[:1]


def plant(kind: str, name: str, text: str, rng: random.Random) -> tuple[str, str]:
    """The changed copy: (file name, contents)."""
    if kind == "exact-copy":
        return f"{name}.txt", text
    paras = paragraphs(text)
    title, body = paras[0], paras[1:]
    if kind == "reformatted-md":
        wrapped = "\n\n".join(textwrap.fill(p, 72) for p in body)
        return f"{name}.md", f"# {title}\n\n{wrapped}\n"
    if kind == "reformatted-html":
        ps = "\n".join(f"  <p>{html.escape(p)}</p>" for p in body)
        page = (
            f"<!DOCTYPE html>\n<html><head><title>{html.escape(title)}</title></head>\n"
            f"<body>\n  <h1>{html.escape(title)}</h1>\n{ps}\n</body></html>\n"
        )
        return f"{name}.html", page
    if kind == "reworded-light":
        body = drop_sentences([reword(p, rng, 0.1) for p in body], rng, 0.08)
    elif kind == "reworded-heavy":
        body = drop_sentences([reword(p, rng, 0.25) for p in body], rng, 0.33)
        middle = body[1:]
        rng.shuffle(middle)
        body = body[:1] + middle
    elif kind.startswith(("truncated", "excerpt")):
        share = int(kind.rsplit("-", 1)[1]) / 100
        body = body[: max(1, round(len(body) * share))]
    return f"{name}-{kind}.txt", "\n\n".join([title, *body]) + "\n"


def build_folder(folder: Path, originals: int, planted: int, seed: int) -> dict:
    """Write the folder; returns the ground truth (which file is a copy of which)."""
    folder = folder.resolve()
    rng = random.Random(seed)
    articles = load_articles(originals, rng)
    (folder / "originals").mkdir(parents=True, exist_ok=True)
    (folder / "copies").mkdir(parents=True, exist_ok=True)
    for name, text in articles:
        (folder / "originals" / f"{name}.txt").write_text(text, encoding="utf-8")
    truth = []
    for i, (name, text) in enumerate(rng.sample(articles, planted)):
        kind = KINDS[i % len(KINDS)]
        file_name, contents = plant(kind, name, text, rng)
        (folder / "copies" / file_name).write_text(contents, encoding="utf-8")
        truth.append(
            {
                "original": str(folder / "originals" / f"{name}.txt"),
                "copy": str(folder / "copies" / file_name),
                "kind": kind,
            }
        )
    return {"originals": originals, "planted": planted, "seed": seed, "pairs": truth}


def bienc(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "bienc_cli", *args]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if check and result.returncode not in (0, 1):
        sys.exit(f"{' '.join(cmd)} failed ({result.returncode}): {result.stderr}")
    return result


def found_pairs(index: Path, threshold: float) -> dict[frozenset[str], float]:
    """Near- and exact-duplicate pairs reported by `bienc dedup --format jsonl --pairs`."""
    result = bienc(
        "dedup", "--index", str(index), "--threshold", str(threshold), "--pairs", "-f", "jsonl"
    )
    pairs = {}
    for line in result.stdout.splitlines():
        record = json.loads(line)
        pairs[frozenset((record["a"], record["b"]))] = record["similarity"]
    return pairs


def grouped_pairs(index: Path, threshold: float) -> set[frozenset[str]]:
    """(keeper, member) pairs of the groups `bienc dedup` forms."""
    result = bienc("dedup", "--index", str(index), "--threshold", str(threshold), "-f", "jsonl")
    out = set()
    for line in result.stdout.splitlines():
        group = json.loads(line)
        for member in group["members"]:
            out.add(frozenset((group["keeper"]["doc_id"], member["doc_id"])))
    return out


def prepare(out: Path, originals: int, planted: int, seed: int, reuse: bool) -> tuple[Path, dict]:
    """The folder, its index and its ground truth for one seed (built unless ``reuse``)."""
    folder, index, truth_file = out / "corpus", out / "index", out / "truth.json"
    if not (reuse and truth_file.exists() and (index / "CURRENT").exists()):
        import shutil

        shutil.rmtree(out, ignore_errors=True)
        truth = build_folder(folder, originals, planted, seed)
        out.mkdir(parents=True, exist_ok=True)
        truth_file.write_text(json.dumps(truth, indent=1), encoding="utf-8")
        result = bienc("index", str(folder), "--index", str(index), "--rebuild", "--quiet")
        if result.returncode != 0:
            sys.exit(result.stderr)
    return index, json.loads(truth_file.read_text(encoding="utf-8"))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--originals", type=int, default=300)
    parser.add_argument("--planted", type=int, default=96)
    parser.add_argument("--seeds", default="7,11", help="one folder per seed, pooled")
    parser.add_argument("--out", default=str(OUT))
    parser.add_argument("--reuse", action="store_true", help="use the folders and indexes built")
    parser.add_argument("--thresholds", default="0.80,0.85,0.86,0.88,0.90,0.92,0.95")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    runs = [
        prepare(Path(args.out) / f"seed{seed}", args.originals, args.planted, seed, args.reuse)
        for seed in seeds
    ]
    positives_total = 0
    for _, truth in runs:
        positives_total += sum(p["kind"] not in NOT_DUPLICATES for p in truth["pairs"])
    documents = sum(t["originals"] + t["planted"] for _, t in runs)
    print(
        f"{len(runs)} folders (seeds {args.seeds}): {args.originals} distinct BBC articles and "
        f"{args.planted} planted copies each; {documents} documents, {positives_total} "
        "positive pairs in all"
    )
    print(f"{'threshold':>9} {'found':>5} {'TP':>4} {'FP':>4} {'P':>6} {'R':>6} {'F1':>6}  "
          f"{'grouped R':>9}  recall by kind")  # fmt: skip
    for threshold in [float(t) for t in args.thresholds.split(",")]:
        found_n = true_positive = grouped_hits = 0
        by_kind: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        false_positives = []
        for index, truth in runs:
            positives = {
                frozenset((p["original"], p["copy"]))
                for p in truth["pairs"]
                if p["kind"] not in NOT_DUPLICATES
            }
            kind_of = {frozenset((p["original"], p["copy"])): p["kind"] for p in truth["pairs"]}
            found = found_pairs(index, threshold)
            found_n += len(set(found) - (set(kind_of) - positives))  # excerpts: neither way
            true_positive += len(set(found) & positives)
            grouped_hits += len(grouped_pairs(index, threshold) & positives)
            for pair, kind in kind_of.items():
                by_kind[kind][1] += 1
                by_kind[kind][0] += pair in found
            false_positives += [
                (found[p], *sorted(Path(x).name for x in p)) for p in set(found) - set(kind_of)
            ]
        precision = true_positive / found_n if found_n else 1.0
        recall = true_positive / positives_total
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        kinds = " ".join(f"{k}={hit}/{n}" for k, (hit, n) in sorted(by_kind.items()))
        print(
            f"{threshold:9.2f} {found_n:5d} {true_positive:4d} {found_n - true_positive:4d} "
            f"{precision:6.3f} {recall:6.3f} {f1:6.3f}  {grouped_hits / positives_total:9.3f}  "
            f"{kinds}"
        )
        for similarity, a, b in sorted(false_positives, reverse=True)[:3]:
            print(f"{'':9}   false positive {similarity:.3f}: {a} ~ {b}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
