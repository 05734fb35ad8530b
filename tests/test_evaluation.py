"""`bienc eval`: metrics against values known in advance, every input format, the CLI.

Metric values are worked out by hand in the comments; the three "pytrec_eval" cases were
also run through pytrec_eval 0.5.11 (trec_eval) and agree to the last digit shown.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from bienc_cli.cli.main import app
from bienc_cli.errors import ExitStatus, UsageError
from bienc_cli.evaluation import judgements as judgements
from bienc_cli.evaluation import metrics as metrics
from bienc_cli.evaluation.ann import ann_recall, exact_top
from bienc_cli.evaluation.matching import DocumentMatcher
from bienc_cli.store import generations as store

runner = CliRunner()


def bienc(*args, input=None):
    return runner.invoke(app, [str(a) for a in args], input=input, catch_exceptions=False)


# ---- metrics -------------------------------------------------------------------------------

# Ranking a b c d; relevant b (grade 1), d (grade 2) and e (grade 1, never retrieved).
RANKING = ["a", "b", "c", "d"]
JUDGED = {"b": 1, "d": 2, "e": 1, "c": 0}


def test_ndcg_linear_gains_and_ideal_over_all_judgements():
    # DCG = 1/log2(3) + 2/log2(5); ideal (2, 1, 1) = 2 + 1/log2(3) + 1/log2(4)
    dcg = 1 / math.log2(3) + 2 / math.log2(5)
    ideal = 2 + 1 / math.log2(3) + 0.5
    assert metrics.ndcg_at_k(RANKING, JUDGED, 10) == pytest.approx(dcg / ideal)
    assert metrics.ndcg_at_k(RANKING, JUDGED, 10) == pytest.approx(0.476626, abs=1e-6)
    # @1: nothing relevant at rank 1; the ideal is cut at 1 too
    assert metrics.ndcg_at_k(RANKING, JUDGED, 1) == 0.0
    # @2: b at rank 2 gains 1/log2(3); ideal top-2 = 2 + 1/log2(3)
    assert metrics.ndcg_at_k(RANKING, JUDGED, 2) == pytest.approx(
        (1 / math.log2(3)) / (2 + 1 / math.log2(3))
    )


def test_recall_counts_unretrieved_relevant_documents():
    assert metrics.recall_at_k(RANKING, JUDGED, 1) == 0.0
    assert metrics.recall_at_k(RANKING, JUDGED, 2) == pytest.approx(1 / 3)
    assert metrics.recall_at_k(RANKING, JUDGED, 100) == pytest.approx(2 / 3)


def test_mrr_is_cut_at_k():
    assert metrics.mrr_at_k(RANKING, JUDGED, 10) == 0.5
    assert metrics.mrr_at_k(RANKING, JUDGED, 1) == 0.0


def test_average_precision_divides_by_all_relevant():
    # precision at the relevant ranks: 1/2 (rank 2), 2/4 (rank 4); three relevant in all
    assert metrics.average_precision(RANKING, JUDGED) == pytest.approx(1 / 3)
    assert metrics.average_precision(RANKING, JUDGED, 3) == pytest.approx(0.5 / 3)
    # map_cut divides by all relevant documents, not by min(relevant, k)
    assert metrics.average_precision(["r1", "x"], {"r1": 1, "r2": 1, "r3": 1}, 1) == pytest.approx(
        1 / 3
    )


def test_perfect_and_empty_rankings():
    judged = {"x": 2, "y": 1}
    assert metrics.score_query(["x", "y"], judged, (1, 10)) == {
        "ndcg@10": 1.0,
        "mrr@10": 1.0,
        "map@10": 1.0,
        "recall@1": 0.5,
        "recall@10": 1.0,
    }
    assert set(metrics.score_query([], judged, (1, 10)).values()) == {0.0}


def test_wrong_grade_order_is_penalised():
    # y (grade 2) below x (grade 1): DCG = 1 + 2/log2(3), ideal = 2 + 1/log2(3)
    value = metrics.ndcg_at_k(["x", "y"], {"x": 1, "y": 2}, 10)
    assert value == pytest.approx((1 + 2 / math.log2(3)) / (2 + 1 / math.log2(3)))
    assert value == pytest.approx(0.859719, abs=1e-6)


def test_no_relevant_document_scores_zero_everywhere():
    scores = metrics.score_query(["a", "b"], {"a": 0, "b": -1}, (1, 10))
    assert set(scores.values()) == {0.0}


@pytest.mark.parametrize(
    "ranking, judged, expected",
    [
        (
            ["d3", "d1", "x", "d2", "y", "z", "d5", "w", "v", "u", "d4"],
            {"d1": 2, "d2": 1, "d3": 3, "d4": 1, "d5": 0, "d6": 2},
            {"ndcg@10": 0.771876, "map@10": 0.55, "recall@1": 0.2, "recall@5": 0.6, "mrr@10": 1.0},
        ),
        (
            [*"abcdefghijk", "rel"],
            {"rel": 1, "other": 1},
            {"ndcg@10": 0.0, "map@10": 0.0, "recall@1": 0.0, "recall@5": 0.0, "mrr@10": 0.0},
        ),
        (
            ["n1", "n2", "r"],
            {"n1": 0, "n2": 0, "r": 1},
            {"ndcg@10": 0.5, "map@10": 1 / 3, "recall@1": 0.0, "recall@5": 1.0, "mrr@10": 1 / 3},
        ),
    ],
)
def test_agrees_with_pytrec_eval(ranking, judged, expected):
    scores = metrics.score_query(ranking, judged, (1, 5, 10))
    for name, value in expected.items():
        assert scores[name] == pytest.approx(value, abs=1e-6), name


def test_mean_scores():
    assert metrics.mean_scores([{"m": 1.0}, {"m": 0.0}, {"m": 0.5}], ["m"]) == {"m": 0.5}
    assert metrics.mean_scores([], ["m"]) == {"m": 0.0}


def test_ann_recall_counts_ties_as_found():
    exact = np.array([[0.9, 0.8, 0.8, 0.1]], dtype=np.float32)
    # the approximate search found the *other* of two identical chunks at 0.8: not a miss
    assert ann_recall(exact, np.array([[0.9, 0.8]], dtype=np.float32), 3) == pytest.approx(2 / 3)
    assert ann_recall(exact, np.array([[0.9, 0.8, 0.8]]), 3) == 1.0
    assert ann_recall(exact, np.array([[0.9, 0.1, 0.0]]), 2) == 0.5


def test_exact_top_matches_a_full_sort():
    rng = np.random.default_rng(3)
    matrix = rng.normal(size=(200, 16)).astype(np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    queries = matrix[:5] + 0.1
    labels = np.arange(1000, 1200, dtype=np.uint64)
    found, scores = exact_top(queries, labels, matrix, 7, batch=2)
    full = np.argsort(-(queries @ matrix.T), axis=1)[:, :7]
    assert (found == labels[full]).all()
    assert np.all(np.diff(scores, axis=1) <= 0)


# ---- loaders -------------------------------------------------------------------------------


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def beir(tmp_path):
    queries = _write(
        tmp_path / "queries.jsonl",
        '{"_id": "1", "text": "cats purr", "metadata": {"lang": "en"}}\n'
        '{"_id": "2", "text": "rockets  reach orbit", "metadata": {}}\n'
        '{"_id": "3", "text": "an unjudged query", "metadata": {}}\n',
    )
    return queries


@pytest.mark.parametrize(
    "qrels_text",
    [
        "query-id\tcorpus-id\tscore\n1\tcats.md\t1\n2\trockets.txt\t2\n2\tdogs.txt\t0\n",
        "1\tcats.md\t1\n2\trockets.txt\t2\n2\tdogs.txt\t0\n",  # BEIR without a header
        "1 0 cats.md 1\n2 0 rockets.txt 2\n2 0 dogs.txt 0\n",  # TREC
        "4\tunknown\t1\n1\tcats.md\t1\n2\trockets.txt\t2\n2\tdogs.txt\t0\n",  # 4 has no text
    ],
)
def test_beir_and_trec_qrels(tmp_path, beir, qrels_text):
    qrels = _write(tmp_path / "qrels.tsv", qrels_text)
    data = judgements.load_eval_set(beir, qrels)
    assert [(q.id, q.text) for q in data.queries] == [
        ("1", "cats purr"),
        ("2", "rockets  reach orbit"),
    ]
    assert data.qrels == {"1": {"cats.md": 1}, "2": {"rockets.txt": 2, "dogs.txt": 0}}
    assert data.unjudged == 1  # query 3
    assert data.no_text == (1 if qrels_text.startswith("4") else 0)
    assert data.queries[0].meta == {"metadata": {"lang": "en"}}


def test_plain_csv_with_query_text_needs_no_queries_file(tmp_path):
    table = _write(
        tmp_path / "judged.csv",
        "query,relevant,lang\ncats purr,cats.md,en\ncats purr,dogs.txt,en\n"
        "Les fusées,rockets.txt,fr\n",
    )
    data = judgements.load_eval_set(None, table)
    assert [q.text for q in data.queries] == ["cats purr", "Les fusées"]
    assert data.qrels["cats purr"] == {"cats.md": 1, "dogs.txt": 1}
    assert data.queries[1].meta == {"lang": "fr"}


def test_jsonl_with_lists_of_relevant_ids_and_grades(tmp_path):
    table = _write(
        tmp_path / "judged.jsonl",
        '{"qid": "a", "question": "q one", "doc_ids": ["x", "y"], "grade": 2}\n'
        '{"qid": "b", "question": "q two", "doc_ids": "z"}\n',
    )
    data = judgements.load_eval_set(table, None)
    assert data.qrels == {"a": {"x": 2, "y": 2}, "b": {"z": 1}}
    assert [q.text for q in data.queries] == ["q one", "q two"]


def test_parquet_judgements_with_query_ids_joined_to_a_tsv_of_queries(tmp_path):
    qrels = tmp_path / "qrels.parquet"
    pq.write_table(
        pa.table({"query_id": [7, 8], "corpus_id": ["a.md", "b.md"], "score": [1.0, 3.0]}),
        qrels,
    )
    queries = _write(tmp_path / "queries.tsv", "7\tfirst query\n8\tsecond query\n")  # MS MARCO
    data = judgements.load_eval_set(queries, qrels)
    assert data.qrels == {"7": {"a.md": 1}, "8": {"b.md": 3}}
    assert [q.text for q in data.queries] == ["first query", "second query"]


def test_pytrec_style_json(tmp_path):
    qrels = _write(tmp_path / "qrels.json", json.dumps({"q1": {"d1": 1, "d2": 0}}))
    queries = _write(tmp_path / "queries.csv", "id,query\nq1,the text\n")
    data = judgements.load_eval_set(queries, qrels, judgements.Columns())
    assert data.qrels == {"q1": {"d1": 1, "d2": 0}}
    assert data.queries[0].text == "the text"


def test_columns_named_on_the_command_line(tmp_path):
    table = _write(tmp_path / "t.csv", "title,answer_row,stars\nhow to x,12,2\n")
    data = judgements.load_eval_set(
        table, None, judgements.Columns(query_text="title", doc_id="answer_row", score="stars")
    )
    assert data.qrels == {"how to x": {"12": 2}}


@pytest.mark.parametrize(
    "files, columns, message",
    [
        ({"qrels": "query,foo\nq,x\n"}, judgements.Columns(), "no relevant document id column"),
        (
            {"qrels": "query,doc,score\nq,x,high\n"},
            judgements.Columns(),
            "grade 'high' is not a number",
        ),
        ({"qrels": "query,doc\nq,x\n"}, judgements.Columns(score="stars"), "--score-column stars"),
        (
            {"qrels": "query,doc,score\nq,x,0\n"},
            judgements.Columns(),
            "no judgement has a grade above 0",
        ),
        (
            {"qrels": "a\tb\tc\td\te\n1\t2\t3\t4\t5\n"},
            judgements.Columns(),
            "no relevant document id",
        ),
        (
            {"qrels": "qid,doc\n9,x\n", "queries": "id,text\n1,q\n"},
            judgements.Columns(),
            "no judged query",
        ),
        (
            {"qrels": "qid,doc\n1,x\n", "queries": "text\nq\n"},
            judgements.Columns(),
            "has no id column",
        ),
        ({"qrels": "qid,doc\n1,x\n"}, judgements.Columns(), "give their texts with --queries"),
    ],
)
def test_loader_errors_say_what_to_fix(tmp_path, files, columns, message):
    qrels = _write(tmp_path / "qrels.csv", files["qrels"])
    queries = _write(tmp_path / "queries.csv", files["queries"]) if "queries" in files else None
    with pytest.raises(UsageError, match=message):
        judgements.load_eval_set(queries, qrels, columns)


def test_missing_files_and_nothing_given(tmp_path):
    with pytest.raises(UsageError, match="no such file"):
        judgements.load_eval_set(None, tmp_path / "nope.tsv")
    with pytest.raises(UsageError, match="give --qrels"):
        judgements.load_eval_set(None, None)


# ---- matching judged ids to documents ----------------------------------------------------


@pytest.fixture
def indexed(tmp_path, corpus, fake_encoder):
    (corpus / "faq.jsonl").write_text(
        '{"id": "f1", "text": "How do rockets reach orbit?", "topic": "space"}\n'
        '{"id": "f2", "text": "Why do cats purr?", "topic": "pets"}\n'
    )
    (corpus / "sub" / "cats.md").write_text("A second file named cats, about kittens.\n")
    root = tmp_path / "idx"
    result = bienc("index", corpus, "--index", root, "--id-column", "id", "--quiet")
    assert result.exit_code == 0, result.output
    return root


def test_document_matcher_accepts_the_ways_users_name_documents(indexed, corpus, monkeypatch):
    monkeypatch.chdir(corpus.parent)
    matcher = DocumentMatcher(store.open_index(indexed))
    rockets = str(corpus / "sub" / "rockets.txt")
    for name in (rockets, "sub/rockets.txt", "./sub/rockets.txt", "docs/sub/rockets.txt",
                 "rockets.txt", "rockets"):  # fmt: skip
        assert matcher.match(name) == (rockets, False), name
    assert matcher.match("cats.md") == (str(corpus / "cats.md"), False)  # relative to the root
    assert matcher.match("sub/cats.md") == (str(corpus / "sub" / "cats.md"), False)
    faq = str(corpus / "faq.jsonl")
    assert matcher.match("f2") == (f"{faq}#f2", False)
    assert matcher.match("faq.jsonl#f2") == (f"{faq}#f2", False)
    assert matcher.match("nothing.md") == (None, False)
    assert matcher.match("cats") == (None, True)  # cats.md and sub/cats.md
    assert matcher.user_id(rockets) == "sub/rockets.txt"
    assert matcher.top_folder(rockets) == "sub"
    assert matcher.top_folder(str(corpus / "dogs.txt")) == "."


# ---- the command ---------------------------------------------------------------------------


def _qrels(tmp_path, rows, name="qrels.csv"):
    return _write(tmp_path / name, "query,relevant,score\n" + "".join(f"{r}\n" for r in rows))


def _eval(*args):
    result = bienc("eval", *args, "-f", "json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout), result


def test_eval_known_figures(tmp_path, indexed):
    # The fake encoder gives a document's own text as query cosine 1: it ranks first.
    # q1 -> its document at rank 1 (all metrics 1); q2's only relevant id is not indexed (0).
    qrels = _qrels(
        tmp_path,
        [
            "Cats purr and sleep most of the day in the sun.,cats.md,1",
            "Dogs bark at the postman,missing.md,1",
        ],
    )
    report, result = _eval("--index", indexed, "--qrels", qrels, "-k", "1,5")
    figures = report["indexes"][0]
    assert figures["metrics"] == {
        "ndcg@10": 0.5,
        "mrr@10": 0.5,
        "map@5": 0.5,
        "recall@1": 0.5,
        "recall@5": 0.5,
    }
    assert report["queries"] == 2 and report["depth"] == 10
    assert figures["judged_not_in_index"] == 1 and figures["unmatched_examples"] == ["missing.md"]
    assert "1 relevant judgements match no document (e.g. missing.md)" in result.stderr


def test_eval_per_query_file_agrees_with_the_summary(tmp_path, indexed):
    qrels = _qrels(
        tmp_path,
        [
            "Rockets burn fuel to reach orbit,sub/rockets.txt,2",
            "Rockets burn fuel to reach orbit,f1,1",
            "kittens,sub/cats.md,1",
            "Bread dough with flour,bread.md,1",
        ],
    )
    out = tmp_path / "per_query.jsonl"
    report, _ = _eval("--index", indexed, "--qrels", qrels, "--per-query", out)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["query"] for r in records] == [
        "Rockets burn fuel to reach orbit",
        "kittens",
        "Bread dough with flour",
    ]
    for name, mean in report["indexes"][0]["metrics"].items():
        assert mean == pytest.approx(sum(r[name] for r in records) / 3, abs=1e-5)
    for record in records:
        # every document is retrieved (7 documents, depth 100): rank decides MRR
        assert record["missed"] == [] and record["recall@100"] == 1.0
        assert record["mrr@10"] == pytest.approx(1 / record["first_relevant_rank"], abs=1e-5)
    assert records[0]["retrieved"][0] == "sub/rockets.txt" and records[0]["relevant"] == 2


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".json"])
def test_per_query_formats(tmp_path, indexed, suffix):
    qrels = _qrels(tmp_path, ["kittens,sub/cats.md,1"])
    out = tmp_path / f"per_query{suffix}"
    _eval("--index", indexed, "--qrels", qrels, "--per-query", out)
    text = out.read_text()
    if suffix == ".json":
        assert json.loads(text)[0]["query"] == "kittens"
    else:
        header, row = text.splitlines()
        sep = "\t" if suffix == ".tsv" else ","
        assert header.split(sep)[:3] == ["index", "query_id", "query"]
        assert "kittens" in row


def test_eval_by_query_and_document_columns(tmp_path, indexed):
    qrels = _write(
        tmp_path / "judged.csv",
        "query,relevant,lang\n"
        "Cats purr and sleep most of the day in the sun.,cats.md,en\n"
        "Why do cats purr?,f2,en\n"
        "Rockets burn fuel to reach orbit,sub/rockets.txt,fr\n",
    )
    report, _ = _eval(
        "--index", indexed, "--qrels", qrels, "--by", "lang", "--by", "folder",
        "--by", "doc:topic", "--by", "kind",
    )  # fmt: skip
    breakdowns = {b["by"]: b for b in report["indexes"][0]["breakdowns"]}
    lang = breakdowns["lang"]
    assert lang["side"] == "query"
    assert [(g["value"], g["queries"]) for g in lang["groups"]] == [("en", 2), ("fr", 1)]
    folder = {g["value"]: g["queries"] for g in breakdowns["folder"]["groups"]}
    assert folder == {".": 2, "sub": 1}  # cats.md and faq.jsonl sit in the root
    topic = {g["value"]: g["queries"] for g in breakdowns["topic"]["groups"]}
    assert topic == {"(none)": 2, "pets": 1}  # files have no topic
    kinds = {g["value"] for g in breakdowns["kind"]["groups"]}
    assert kinds == {"markdown", "table", "text"}
    for breakdown in breakdowns.values():  # each group's mean is over its own queries
        assert sum(g["queries"] for g in breakdown["groups"]) == 3


def test_eval_by_unknown_column(tmp_path, indexed):
    qrels = _qrels(tmp_path, ["kittens,sub/cats.md,1"])
    result = bienc("eval", "--index", indexed, "--qrels", qrels, "--by", "colour")
    assert result.exit_code == ExitStatus.USAGE
    assert "--by colour: no such column" in result.stderr and "topic" in result.stderr


def test_eval_ann_audit(tmp_path, indexed):
    qrels = _qrels(tmp_path, ["kittens,sub/cats.md,1", "Why do cats purr?,f2,1"])
    report, _ = _eval("--index", indexed, "--qrels", qrels, "--ann", "-k", "1,5")
    ann = report["indexes"][0]["ann"]
    # 7 chunks: every search is exhaustive, so HNSW finds exactly what brute force finds
    assert ann["chunks"] == 7 and ann["meets_target"] is True
    assert ann["stored_ef"] == 128 and ann["stored_recall"] == {"recall@1": 1.0, "recall@5": 1.0}
    assert ann["min_ef"] == {"recall@1": 10, "recall@5": 10}
    assert ann["exact_metrics"] == report["indexes"][0]["metrics"]
    assert [point["ef"] for point in ann["curve"]] == [10, 128]  # 10 already covers 7 chunks


def test_eval_compares_several_indexes(tmp_path, indexed, corpus):
    other = tmp_path / "idx2"
    result = bienc("index", corpus, "--index", other, "--exclude", "*.jsonl", "--quiet")
    assert result.exit_code == 0
    qrels = _qrels(
        tmp_path,
        [
            "Cats purr and sleep most of the day in the sun.,docs/cats.md,1",
            "Why do cats purr?,f2,1",
        ],
    )
    report, result = _eval("--index", indexed, "--index", other, "--qrels", qrels)
    first, second = report["indexes"]
    assert (first["index"], second["index"]) == (str(indexed), str(other))
    assert first["metrics"]["ndcg@10"] == 1.0 and first["judged_not_in_index"] == 0
    assert second["metrics"]["ndcg@10"] == 0.5 and second["judged_not_in_index"] == 1
    assert "idx2: 1 relevant judgements match no document (e.g. f2)" in result.stderr
    table = bienc("eval", "--index", indexed, "--index", other, "--qrels", qrels, "-f", "table")
    assert "1.0000" in table.stdout and "0.5000" in table.stdout


def test_eval_table_and_tsv_output(tmp_path, indexed):
    qrels = _qrels(tmp_path, ["kittens,sub/cats.md,1"])
    result = bienc("eval", "--index", indexed, "--qrels", qrels, "--by", "kind", "--ann")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].split("\t") == [
        "index", "by", "group", "queries", "ndcg@10", "mrr@10", "map@100",
        "recall@1", "recall@10", "recall@50", "recall@100",
    ]  # fmt: skip
    assert [line.split("\t")[1:3] for line in lines[1:]] == [
        ["", ""],
        ["kind", "markdown"],
        ["search", "exact"],
    ]
    result = bienc("eval", "--index", indexed, "--qrels", qrels, "-f", "table", "--by", "kind")
    assert "nDCG@10" in result.stdout and "by document kind" in result.stdout


@pytest.mark.parametrize(
    "args, status, message",
    [
        (["-k", "1,x"], ExitStatus.USAGE, "-k expects comma-separated numbers"),
        (["-k", "0"], ExitStatus.USAGE, "positive cut-offs"),
        (["-f", "xml"], ExitStatus.USAGE, "unknown --format"),
        (["--target-recall", "2"], ExitStatus.USAGE, "--target-recall"),
    ],
)
def test_eval_usage_errors(tmp_path, indexed, args, status, message):
    qrels = _qrels(tmp_path, ["kittens,sub/cats.md,1"])
    result = bienc("eval", "--index", indexed, "--qrels", qrels, *args)
    assert result.exit_code == status and message in result.stderr


def test_eval_without_index(tmp_path):
    qrels = _qrels(tmp_path, ["kittens,cats.md,1"])
    result = bienc("eval", "--index", tmp_path / "none", "--qrels", qrels)
    assert result.exit_code == ExitStatus.NO_INDEX and "no bienc index" in result.stderr


def test_eval_when_no_judged_id_matches(tmp_path, indexed):
    qrels = _qrels(tmp_path, ["kittens,doc-17,1"])
    result = bienc("eval", "--index", indexed, "--qrels", qrels)
    assert result.exit_code == ExitStatus.USAGE
    assert "no judged document is in the index" in result.stderr and "'doc-17'" in result.stderr


@pytest.mark.slow
def test_eval_with_the_real_model(tmp_path):
    import shutil

    from tests.conftest import SAMPLE_CORPUS

    corpus = tmp_path / "astronomy"
    shutil.copytree(SAMPLE_CORPUS / "astronomy", corpus)
    root = tmp_path / "idx"
    assert bienc("index", corpus, "--index", root, "--quiet").exit_code == 0
    qrels = _qrels(
        tmp_path,
        [
            "why does mars look red,why-mars-is-red.md,1",
            "what telescope should a beginner buy,choosing-a-telescope.html,1",
            "the rings around saturn,saturn-rings.md,1",
        ],
    )
    report, _ = _eval("--index", root, "--qrels", qrels, "--ann", "-k", "1,5")
    figures = report["indexes"][0]
    # Seven documents on distinct subjects: each query's document is the obvious first hit.
    assert figures["metrics"]["recall@1"] == 1.0 and figures["metrics"]["ndcg@10"] == 1.0
    assert figures["ann"]["exact_metrics"] == figures["metrics"]
