"""Incremental indexing with the fake encoder: what gets encoded, kept, replaced and removed."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from bienc_cli.errors import IncompatibleIndex, UsageError
from bienc_cli.indexing.request import IndexRequest
from bienc_cli.indexing.run import run_index
from bienc_cli.query.search import QueryOptions, search
from bienc_cli.store import generations as store
from bienc_cli.store import layout
from tests.conftest import make_cats_unreadable, make_folder_unreadable


def _index(root, *sources, **kwargs):
    return run_index(IndexRequest(root=root, sources=[str(s) for s in sources], **kwargs))


def _docs(root):
    table = store.open_index(root).read_sidecar(columns=["doc_id"])
    return sorted(set(table["doc_id"].to_pylist()))


def test_first_run_indexes_everything(tmp_path, corpus, fake_encoder):
    report = _index(tmp_path / "idx", corpus)
    assert (report.added, report.updated, report.removed, report.unchanged) == (4, 0, 0, 0)
    assert report.documents == 4 and report.chunks == 4 and report.generation == 1
    assert _docs(tmp_path / "idx") == sorted(str(p) for p in corpus.rglob("*.*"))
    manifest = store.open_index(tmp_path / "idx").manifest
    assert manifest["model"]["name"] == "all-MiniLM-L6-v2" and manifest["model"]["dim"] == 384
    assert manifest["sources"]["roots"] == [str(corpus)]
    assert manifest["counts"] == {
        "documents": 4,
        "chunks": 4,
        "vectors": 4,
        "deleted": 0,
        "next_label": 4,
    }


def test_rerun_with_nothing_changed_encodes_and_writes_nothing(
    tmp_path, corpus, fake_encoder, monkeypatch
):
    _index(tmp_path / "idx", corpus)
    calls = fake_encoder.calls

    def no_model(model):  # a run with nothing to do must not even load the model
        raise AssertionError("the model was loaded")

    monkeypatch.setattr("bienc_cli.indexing.run.load_encoder", no_model)
    report = run_index(IndexRequest(root=tmp_path / "idx"))  # no sources: the remembered ones
    assert (report.added, report.updated, report.removed, report.unchanged) == (0, 0, 0, 4)
    assert report.generation is None and fake_encoder.calls == calls
    assert store.open_index(tmp_path / "idx").manifest["generation"] == 1


def test_add_modify_delete(tmp_path, corpus, fake_encoder):
    root = tmp_path / "idx"
    _index(root, corpus)
    (corpus / "new.txt").write_text("Volcanoes erupt molten lava and ash.\n")
    (corpus / "dogs.txt").write_text("Dogs chase cats and fetch sticks thrown far away.\n")
    (corpus / "sub" / "bread.md").unlink()
    before = fake_encoder.encoded
    report = _index(root, corpus)
    assert (report.added, report.updated, report.removed, report.unchanged) == (1, 1, 1, 2)
    assert fake_encoder.encoded - before == 2  # only the new and the changed document
    docs = _docs(root)
    assert str(corpus / "sub" / "bread.md") not in docs and str(corpus / "new.txt") in docs
    hits = search(root, ["bread dough flour yeast"], QueryOptions(k=10))[0]
    assert all("bread" not in h.path for h in hits)  # deleted documents never come back
    hits = search(root, ["Dogs chase cats and fetch sticks thrown far away."], QueryOptions(k=1))[0]
    assert hits[0].path == str(corpus / "dogs.txt") and hits[0].score > 0.99


def test_touched_but_identical_file_is_not_reencoded(tmp_path, corpus, fake_encoder):
    root = tmp_path / "idx"
    _index(root, corpus)
    path = corpus / "cats.md"
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    before = fake_encoder.encoded
    report = _index(root, corpus)
    assert report.unchanged == 4 and fake_encoder.encoded == before
    table = store.open_index(root).read_sidecar(columns=["path", "mtime_ns"]).to_pylist()
    assert {r["mtime_ns"] for r in table if r["path"] == str(path)} == {path.stat().st_mtime_ns}


def test_renamed_file_reuses_stored_vectors(tmp_path, corpus, fake_encoder):
    root = tmp_path / "idx"
    _index(root, corpus)
    (corpus / "cats.md").rename(corpus / "felines.md")
    before = fake_encoder.encoded
    report = _index(root, corpus)
    assert (report.added, report.removed) == (1, 1)
    assert report.chunks_reused == 1 and fake_encoder.encoded == before


def test_deletions_are_compacted_past_the_threshold(tmp_path, fake_encoder):
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(20):
        (docs / f"d{i}.txt").write_text(f"document number {i} about subject {i * 7}")
    root = tmp_path / "idx"
    _index(root, docs)
    for i in range(3):
        (docs / f"d{i}.txt").unlink()
    report = _index(root, docs)
    manifest = store.open_index(root).manifest
    assert not report.compacted and manifest["counts"]["deleted"] == 3
    for i in range(3, 8):
        (docs / f"d{i}.txt").unlink()
    report = _index(root, docs)
    manifest = store.open_index(root).manifest
    assert report.compacted and manifest["counts"]["deleted"] == 0
    assert manifest["hnsw"]["elements"] == 12 == manifest["counts"]["chunks"]
    hits = search(root, ["document number 10 about subject 70"], QueryOptions(k=3))[0]
    assert hits[0].path == str(docs / "d10.txt")


def test_rebuild_starts_over(tmp_path, corpus, fake_encoder):
    root = tmp_path / "idx"
    _index(root, corpus)
    report = run_index(IndexRequest(root=root, rebuild=True))
    assert report.updated == 4 and report.added == 0 and report.chunks_encoded == 4
    assert store.open_index(root).manifest["counts"]["next_label"] == 4


def test_other_model_is_refused(tmp_path, corpus, fake_encoder):
    root = tmp_path / "idx"
    _index(root, corpus)
    other = tmp_path / "other-model"
    from bienc_cli.encoding.model import resolve_model

    src = resolve_model(None).path
    other.mkdir()
    for name in ("config.json", "tokenizer.json", "modules.json", "sentence_bert_config.json"):
        (other / name).write_bytes((open(os.path.join(src, name), "rb")).read())
    config = json.loads((other / "config.json").read_text())
    config["hidden_size"] = 768
    (other / "config.json").write_text(json.dumps(config))
    with pytest.raises(IncompatibleIndex, match="--rebuild"):
        _index(root, corpus, model=str(other))


def test_nothing_to_index_is_a_usage_error(tmp_path, fake_encoder):
    with pytest.raises(UsageError):
        run_index(IndexRequest(root=tmp_path / "idx"))


def test_long_document_is_chunked_with_line_ranges(tmp_path, fake_encoder):
    docs = tmp_path / "docs"
    docs.mkdir()
    lines = [
        f"Line {i}: the quick brown fox number {i} jumps over the lazy dog." for i in range(200)
    ]
    (docs / "long.txt").write_text("\n".join(lines) + "\n")
    report = _index(tmp_path / "idx", docs)
    assert report.chunks > 5
    table = store.open_index(tmp_path / "idx").read_sidecar().to_pylist()
    for row in sorted(table, key=lambda r: r["chunk"]):
        assert row["n_tokens"] <= 254 and row["n_chunks"] == report.chunks
        first = int(row["text"].split(":")[0].split()[-1])
        assert row["line_start"] == first + 1


def test_tables_keep_ids_and_metadata(tmp_path, fake_encoder):
    docs = tmp_path / "docs"
    docs.mkdir()
    rows = [
        {"id": "a", "title": "Cats", "body": "Cats purr.", "lang": "en"},
        {"id": "b", "title": "Chats", "body": "Les chats ronronnent.", "lang": "fr"},
        {"id": "c", "title": None, "body": None, "lang": "en"},
    ]
    (docs / "t.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    options = {"text_columns": ("title", "body"), "id_column": "id"}
    report = _index(tmp_path / "idx", docs, options=options)
    assert report.added == 2 and any(s.row_id == "c" for s in report.skipped)
    hits = search(tmp_path / "idx", ["cats purr"], QueryOptions(k=5, where=(("lang", "fr"),)))[0]
    assert [h.row_id for h in hits] == ["b"] and hits[0].meta["lang"] == "fr"
    assert hits[0].doc_id == f"{docs / 't.jsonl'}#b"
    # options are remembered: a plain re-run reads the table the same way
    report = run_index(IndexRequest(root=tmp_path / "idx"))
    assert report.unchanged == 2 and report.added == 0


def test_unreadable_file_keeps_its_old_documents(tmp_path, corpus, fake_encoder, monkeypatch):
    root = tmp_path / "idx"
    _index(root, corpus)
    (corpus / "cats.md").write_text("# Cats\n\nNow changed, but we cannot read it.\n")
    make_cats_unreadable(monkeypatch)
    report = _index(root, corpus)
    assert report.exit_status == 3 and report.removed == 0
    assert str(corpus / "cats.md") in _docs(root)


def test_an_unreadable_unchanged_file_is_reported_every_run(tmp_path, corpus, fake_encoder):
    """chmod changes neither size nor mtime, so a file made unreadable looks unchanged: it is
    still reported every run while it lasts (exit 3), and its documents are kept."""
    root = tmp_path / "idx"
    _index(root, corpus)
    cats = str(corpus / "cats.md")
    with pytest.MonkeyPatch.context() as patch:
        make_cats_unreadable(patch)
        for _ in range(2):
            report = run_index(IndexRequest(root=root))
            assert report.exit_status == 3 and report.generation is None
            assert _errors(report) == [
                (cats, None, "permission denied; kept its 1 document from the last run")
            ]
            assert (report.unchanged, report.removed) == (4, 0) and cats in _docs(root)
    report = run_index(IndexRequest(root=root))  # readable again: clean, and nothing to redo
    assert report.exit_status == 0 and report.skipped == [] and report.unchanged == 4


def test_rebuild_keeps_what_it_cannot_read(tmp_path, corpus, fake_encoder, monkeypatch):
    """--rebuild while a folder cannot be listed and a file cannot be read: their documents
    keep their content (rows and vectors) from the last run, the report says so, and the
    counts compare with the index as it was."""
    root = tmp_path / "idx"
    _index(root, corpus)
    everything = _docs(root)
    make_folder_unreadable(monkeypatch, corpus / "sub")
    make_cats_unreadable(monkeypatch)
    report = run_index(IndexRequest(root=root, rebuild=True))
    assert report.exit_status == 3 and _docs(root) == everything
    assert (report.added, report.updated, report.removed, report.unchanged) == (0, 1, 0, 3)
    assert report.documents == 4 and report.chunks == 4
    assert sorted(_errors(report)) == [
        (str(corpus / "cats.md"), None, "permission denied; kept its 1 document from the last run"),
        (str(corpus / "sub"), None, "permission denied; kept its 2 documents from the last run"),
    ]
    text = "Rockets burn fuel to reach orbit around the earth."
    [hit] = search(root, [text], QueryOptions(k=1))[0]
    assert hit.path == str(corpus / "sub" / "rockets.txt") and hit.score > 0.999


def test_rebuild_counts_against_the_index_it_replaces(tmp_path, corpus, fake_encoder):
    root = tmp_path / "idx"
    _index(root, corpus)
    (corpus / "dogs.txt").unlink()
    (corpus / "owls.txt").write_text("Owls hunt mice at night.\n")
    report = run_index(IndexRequest(root=root, rebuild=True))
    assert (report.added, report.updated, report.removed, report.unchanged) == (1, 3, 1, 0)
    other = tmp_path / "other"
    other.mkdir()
    (other / "moths.txt").write_text("Moths fly towards the light.\n")
    report = run_index(IndexRequest(root=root, sources=[str(other)], rebuild=True))
    assert (report.added, report.updated, report.removed, report.unchanged) == (1, 0, 4, 0)
    assert _docs(root) == [str(other / "moths.txt")]


@pytest.mark.parametrize(
    "pattern",
    ["**/*.md", "*/*.md", "*/a.md", "*/deep/*.md", "locked/*.md", "locked/deep/*.md", "l*/**"],
)
@pytest.mark.parametrize("rebuild", [False, True], ids=["run", "rebuild"])
def test_a_glob_root_keeps_what_it_cannot_read(
    tmp_path, fake_encoder, monkeypatch, pattern, rebuild
):
    """A glob whose expansion crosses a folder that cannot be listed or searched keeps the
    documents under it and reports it, as a folder root does."""
    docs = tmp_path / "docs"
    (docs / "locked" / "deep").mkdir(parents=True)
    (docs / "locked" / "a.md").write_text("Apples are a red fruit.\n")
    (docs / "locked" / "deep" / "a.md").write_text("Apricots are an orange fruit.\n")
    (docs / "open").mkdir()
    (docs / "open" / "a.md").write_text("Bananas are a yellow fruit.\n")
    root = tmp_path / "idx"
    _index(root, f"{docs}/{pattern}")
    before = _docs(root)
    assert any("/locked/" in d for d in before)
    make_folder_unreadable(monkeypatch, docs / "locked")
    report = run_index(IndexRequest(root=root, rebuild=rebuild))
    assert report.exit_status == 3 and report.removed == 0 and _docs(root) == before
    [error] = report.errors
    assert error.path.startswith(str(docs / "locked")) and "permission denied; kept its" in (
        error.reason
    )


@pytest.mark.parametrize(
    "sources", [["locked/*.txt", "*.txt"], ["locked", "*.txt"]], ids=["glob", "folder"]
)
@pytest.mark.parametrize("rebuild", [False, True], ids=["run", "rebuild"])
def test_a_folder_that_cannot_be_searched_is_named_not_its_ignore_files(
    tmp_path, fake_encoder, monkeypatch, sources, rebuild
):
    """Its ignore files cannot be looked for (EACCES, as for anything in it): that is the
    folder's problem, said once against the folder, with what was kept; the ignore files,
    which may not exist, are not named."""
    docs = tmp_path / "c"
    (docs / "locked").mkdir(parents=True)
    (docs / "locked" / "deep.txt").write_text("Apricots are an orange fruit.\n")
    (docs / "top.txt").write_text("Bananas are a yellow fruit.\n")
    root = tmp_path / "idx"
    _index(root, *(f"{docs}/{s}" for s in sources))
    before = _docs(root)
    make_folder_unreadable(monkeypatch, docs / "locked")
    for _ in range(2):  # and again: said every run while it lasts
        report = run_index(IndexRequest(root=root, rebuild=rebuild))
        assert report.exit_status == 3 and _docs(root) == before
        assert _errors(report) == [
            (str(docs / "locked"), None, "permission denied; kept its 1 document from the last run")
        ]


def _other_model(tmp_path):
    """A model folder of the same shape as the default one but another fingerprint."""
    from bienc_cli.encoding.model import resolve_model

    other = tmp_path / "other-model"
    other.mkdir()
    for name in ("config.json", "tokenizer.json", "modules.json"):
        (other / name).write_bytes(open(f"{resolve_model(None).path}/{name}", "rb").read())
    (other / "vocab-note.txt").write_text("not the default model")
    return other


def test_rebuild_keeps_the_index_model(tmp_path, corpus, fake_encoder):
    root = tmp_path / "idx"
    other = _other_model(tmp_path)
    _index(root, corpus, model=str(other))
    fingerprint = store.open_index(root).manifest["model"]["fingerprint"]
    run_index(IndexRequest(root=root, rebuild=True))
    assert store.open_index(root).manifest["model"]["fingerprint"] == fingerprint


@pytest.mark.parametrize(
    "change",
    [{"model": "other"}, {"overlap": 8}, {"backend": "onnx-int8"}],
    ids=["model", "overlap", "precision"],
)
def test_rebuild_that_cannot_keep_unreadable_content_is_refused(
    tmp_path, corpus, fake_encoder, monkeypatch, change
):
    root = tmp_path / "idx"
    _index(root, corpus)
    if "model" in change:
        change = {"model": str(_other_model(tmp_path))}
    make_folder_unreadable(monkeypatch, corpus / "sub")
    with pytest.raises(UsageError, match="2 documents cannot be read .*sub.* would be lost"):
        run_index(IndexRequest(root=root, rebuild=True, **change))
    assert store.open_index(root).manifest["generation"] == 1 and len(_docs(root)) == 4


def test_vectors_in_index_are_the_encoders(tmp_path, corpus, fake_encoder):
    root = tmp_path / "idx"
    _index(root, corpus)
    generation = store.open_index(root)
    rows = generation.read_sidecar(columns=["label", "text"]).to_pylist()
    stored = generation.load_hnsw().get_items([r["label"] for r in rows], return_type="numpy")
    expected = fake_encoder.encode([r["text"] for r in rows])
    assert np.allclose(stored, expected, atol=1e-6)


def test_bad_files_are_reported_and_skipped_without_aborting(tmp_path, fake_encoder, monkeypatch):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "good.txt").write_text("A perfectly ordinary document about gardens.")
    (docs / "binary.txt").write_bytes(b"\x00\x01\x02binary\x00" * 100)
    (docs / "latin1.txt").write_bytes("Caf\xe9 cr\xe8me br\xfbl\xe9e".encode("latin-1"))
    (docs / "empty.md").write_bytes(b"")
    (docs / "locked.txt").write_text("cannot be read")
    (docs / "vanishing.txt").write_text("gone before it is read")
    from bienc_cli.inputs import readers as readers

    real_open = open

    def guarded_open(path, *args, **kwargs):
        if str(path).endswith("locked.txt"):
            raise PermissionError(13, "Permission denied", str(path))
        if str(path).endswith("vanishing.txt"):
            raise FileNotFoundError(2, "No such file or directory", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(readers, "open", guarded_open, raising=False)
    report = _index(tmp_path / "idx", docs)
    reasons = {os.path.basename(s.path): (s.reason, s.error) for s in report.skipped}
    assert reasons["binary.txt"] == ("binary file", False)
    assert reasons["empty.md"] == ("empty", False)
    assert reasons["locked.txt"][1] and "permission" in reasons["locked.txt"][0]
    assert reasons["vanishing.txt"][1]
    assert report.added == 2 and report.exit_status == 3  # good.txt and latin1.txt indexed
    assert any("latin1.txt" in n.path for n in report.notes)


def test_ef_and_overlap_are_remembered(tmp_path, corpus, fake_encoder):
    root = tmp_path / "idx"
    _index(root, corpus, ef=300, overlap=16)
    report = run_index(IndexRequest(root=root))  # a plain re-run keeps both
    manifest = store.open_index(root).manifest
    assert report.generation is None
    assert (manifest["hnsw"]["ef"], manifest["chunking"]["overlap"]) == (300, 16)
    report = run_index(IndexRequest(root=root, ef=64))  # a new ef alone is written
    assert report.generation == 2 and store.open_index(root).manifest["hnsw"]["ef"] == 64
    with pytest.raises(UsageError, match="--rebuild"):
        run_index(IndexRequest(root=root, overlap=8))
    run_index(IndexRequest(root=root, overlap=8, rebuild=True))
    assert store.open_index(root).manifest["chunking"]["overlap"] == 8


def test_a_crashed_run_resumes_from_the_embedding_cache(tmp_path, fake_encoder, monkeypatch):
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(1200):
        (docs / f"d{i:04d}.txt").write_text(f"note {i} " + "about things " * (i % 7 + 1))
    root = tmp_path / "idx"
    real_encode = fake_encoder.encode

    def crash_on_third_block(texts, **kwargs):
        if fake_encoder.calls == 2:
            raise KeyboardInterrupt  # as if killed while encoding the third block
        return real_encode(texts, **kwargs)

    monkeypatch.setattr(fake_encoder, "encode", crash_on_third_block)
    with pytest.raises(KeyboardInterrupt):
        _index(root, docs)
    assert not (root / layout.CURRENT).exists()  # nothing was published
    monkeypatch.setattr(fake_encoder, "encode", real_encode)
    before = fake_encoder.encoded
    report = _index(root, docs)
    assert report.chunks_resumed == 1024  # two blocks of 512 survived the crash
    assert fake_encoder.encoded - before == 1200 - 1024
    assert not (root / layout.CACHE).exists()  # published, so the cache is cleared
    hits = search(root, ["note 5 " + "about things " * 6], QueryOptions(k=1))[0]
    assert hits[0].path.endswith("d0005.txt") and hits[0].score > 0.999


def test_int8_vectors_are_never_mixed_with_fp32_ones(corpus, tmp_path, fake_encoder):
    root = tmp_path / "idx"
    _index(root, corpus, backend="onnx-int8")
    manifest = store.open_index(root).manifest
    assert manifest["model"]["backend"] == "onnx-int8"
    assert manifest["model"]["onnx_dir"].endswith("-int8")
    (corpus / "new.txt").write_text("Owls hunt mice at night.\n")
    for other in ("onnx", "sentence-transformers", "auto"):
        with pytest.raises(UsageError, match="int8 vectors.*--rebuild"):
            run_index(IndexRequest(root=root, backend=other))
    run_index(IndexRequest(root=root))  # the index's own backend: fine
    run_index(IndexRequest(root=root, rebuild=True))  # a rebuild keeps int8 ...
    assert store.open_index(root).manifest["model"]["backend"] == "onnx-int8"
    run_index(IndexRequest(root=root, rebuild=True, backend="onnx"))  # ... unless told
    # (fp32 now; it records sentence-transformers as the fake encoder made no ONNX export)
    assert store.open_index(root).manifest["model"]["backend"] == "sentence-transformers"
    with pytest.raises(UsageError, match="fp32 vectors.*--rebuild"):
        run_index(IndexRequest(root=root, backend="onnx-int8"))


def _errors(report):
    return [(s.path, s.row_id, s.reason) for s in report.errors]


def test_row_errors_are_reported_every_run_while_they_persist(tmp_path, fake_encoder):
    """A broken JSONL line in an unchanged file is not read again, but is reported again."""
    docs = tmp_path / "docs"
    docs.mkdir()
    table = docs / "t.jsonl"
    table.write_text('{"text": "good row about owls"}\n{"text": broken\n{"text": ""}\n')
    root = tmp_path / "idx"
    first = _index(root, docs)
    second = run_index(IndexRequest(root=root))
    assert first.exit_status == second.exit_status == 3
    assert _errors(first) == _errors(second) == [(str(table), "line 2", _errors(first)[0][2])]
    assert [s.reason for s in second.skipped] == [s.reason for s in first.skipped]  # no text too
    assert second.unchanged == 1 and second.generation is None  # not read, nothing written
    third = run_index(IndexRequest(root=root, sources=[str(docs)]))  # given again: the same
    assert _errors(third) == _errors(first)
    table.write_text('{"text": "good row about owls"}\n{"text": "mended"}\n')
    fixed = run_index(IndexRequest(root=root))
    assert fixed.exit_status == 0 and fixed.skipped == [] and fixed.added == 1
    assert run_index(IndexRequest(root=root)).exit_status == 0


def test_row_errors_survive_runs_that_write_for_other_reasons(tmp_path, fake_encoder):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "t.jsonl").write_text('{"text": "good row"}\n{"text": broken\n')
    root = tmp_path / "idx"
    first = _index(root, docs)
    (docs / "other.txt").write_text("A new file makes the next run write a generation.")
    second = run_index(IndexRequest(root=root))
    assert second.generation == 2 and _errors(second) == _errors(first)
    third = run_index(IndexRequest(root=root, ef=64))  # written again, the table still unread
    assert third.generation == 3 and _errors(third) == _errors(first)
    (docs / "t.jsonl").unlink()  # its errors go with it
    assert run_index(IndexRequest(root=root)).exit_status == 0


def test_documents_without_text_are_skipped_not_added(tmp_path, fake_encoder):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("Real text about cats.")
    (docs / "zero-width.txt").write_text("\u200b\u200b\u200b")  # read, but no token in it
    (docs / "soft-hyphens.txt").write_text("\u00ad\u00ad")
    root = tmp_path / "idx"
    report = _index(root, docs)
    assert (report.added, report.documents) == (1, 1)
    assert sorted(os.path.basename(s.path) for s in report.skipped) == [
        "soft-hyphens.txt",
        "zero-width.txt",
    ]
    (docs / "a.txt").write_text("\u200b")  # an indexed document whose text is gone: removed
    report = run_index(IndexRequest(root=root))
    assert (report.added, report.updated, report.removed, report.documents) == (0, 0, 1, 0)
    assert len(report.skipped) == 3


def test_rows_without_text_are_reported_within_bounds(tmp_path, fake_encoder):
    docs = tmp_path / "docs"
    docs.mkdir()
    rows = [{"text": "one real row"}] + [{"text": "\u200b"}] * 50
    (docs / "t.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    report = _index(tmp_path / "idx", docs)
    assert report.added == 1 and len(report.skipped) == 21
    assert report.skipped[-1].row_id == "*" and report.skipped[-1].reason.startswith("30 more")


@pytest.fixture
def exporting_encoder(fake_encoder, monkeypatch):
    """The fake encoder behind a factory that, as load_encoder does, makes the model's ONNX
    export on first use for every backend but sentence-transformers."""
    from bienc_cli.encoding.onnx_folder import EXPORT_FILES

    def factory(model):
        if model.backend != "sentence-transformers":
            os.makedirs(model.onnx_dir, exist_ok=True)
            for name in EXPORT_FILES:
                with open(os.path.join(model.onnx_dir, name), "w") as f:
                    f.write("fake")
        return fake_encoder

    monkeypatch.setattr("bienc_cli.indexing.run.load_encoder", factory)
    return fake_encoder


def _backend(root):
    model = store.open_index(root).manifest["model"]
    exported = (root / layout.MODELS / model["fingerprint"]).is_dir()
    return model["backend"], model["backend_choice"], exported


@pytest.mark.parametrize("start", ["empty folder", "every file skipped"])
def test_auto_index_built_without_vectors_exports_once_it_has_some(
    tmp_path, exporting_encoder, start
):
    docs = tmp_path / "docs"
    docs.mkdir()
    if start == "every file skipped":
        (docs / "empty.txt").write_text("")
        (docs / "image.txt").write_bytes(b"\x00\x01binary\x00" * 50)
        (docs / "no-text.txt").write_text("\u200b")
    root = tmp_path / "idx"
    report = _index(root, docs)
    assert report.documents == 0 and report.generation == 1
    assert _backend(root) == ("sentence-transformers", "auto", False)  # nothing pinned
    (docs / "owls.txt").write_text("Owls hunt mice at night.\n")
    report = run_index(IndexRequest(root=root))
    assert report.added == 1 and report.backend == "auto"
    assert _backend(root) == ("onnx", "auto", True)
    hits = search(root, ["Owls hunt mice at night."], QueryOptions(k=1))[0]
    assert hits[0].path == str(docs / "owls.txt")


def test_an_explicit_backend_is_remembered_even_without_vectors(tmp_path, exporting_encoder):
    docs = tmp_path / "docs"
    docs.mkdir()
    root = tmp_path / "idx"
    _index(root, docs, backend="sentence-transformers")
    (docs / "owls.txt").write_text("Owls hunt mice at night.\n")
    assert run_index(IndexRequest(root=root)).backend == "sentence-transformers"
    assert _backend(root) == ("sentence-transformers", "sentence-transformers", False)
    run_index(IndexRequest(root=root, rebuild=True))  # a rebuild keeps it too
    assert _backend(root) == ("sentence-transformers", "sentence-transformers", False)
    run_index(IndexRequest(root=root, backend="auto"))  # until told otherwise
    # auto is remembered now, and exports when it next encodes (--backend onnx: at once)
    assert _backend(root) == ("sentence-transformers", "auto", False)
    (docs / "bats.txt").write_text("Bats hunt moths at night.\n")
    run_index(IndexRequest(root=root))
    assert _backend(root) == ("onnx", "auto", True)


def test_an_index_without_vectors_may_switch_to_int8_without_rebuild(tmp_path, fake_encoder):
    docs = tmp_path / "docs"
    docs.mkdir()
    root = tmp_path / "idx"
    _index(root, docs)
    (docs / "owls.txt").write_text("Owls hunt mice at night.\n")
    run_index(IndexRequest(root=root, backend="onnx-int8"))  # nothing of fp32 to mix with
    assert store.open_index(root).manifest["model"]["backend_choice"] == "onnx-int8"
    with pytest.raises(UsageError, match="int8 vectors.*--rebuild"):
        run_index(IndexRequest(root=root, backend="auto"))


@pytest.mark.slow
def test_real_model_exports_to_onnx_when_an_empty_index_gets_documents(tmp_path):
    from typer.testing import CliRunner

    from bienc_cli.cli.main import app
    from bienc_cli.encoding.onnx_folder import is_onnx_export

    def bienc(*args):
        return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)

    docs, root = tmp_path / "docs", tmp_path / "idx"
    docs.mkdir()
    assert bienc("index", docs, "--index", root, "-q").exit_code == 0
    assert not (root / layout.MODELS).exists()  # nothing encoded, nothing exported yet
    (docs / "owls.txt").write_text("Owls hunt mice at night.\n")
    (docs / "bread.txt").write_text("Bread dough needs flour, water, salt and yeast.\n")
    result = bienc("index", "--index", root, "-q", "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["backend"] == "onnx"
    model = store.open_index(root).manifest["model"]
    assert (model["backend"], model["backend_choice"]) == ("onnx", "auto")
    assert is_onnx_export(root / layout.MODELS / model["fingerprint"])
    hits = json.loads(bienc("query", "birds that hunt at night", "-i", root, "-f", "json").stdout)
    assert hits[0]["path"] == str(docs / "owls.txt")
