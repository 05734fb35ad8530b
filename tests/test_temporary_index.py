"""indexing.temporary: the index dedup and cluster build of their SOURCES is theirs alone and
is removed afterwards, whatever happens inside."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from bienc_cli.indexing.request import IndexRequest
from bienc_cli.indexing.temporary import temporary_index
from bienc_cli.store import generations as store


@pytest.fixture
def scratch(tmp_path, monkeypatch):
    """The system temporary folder, with a file of someone else's in it."""
    folder = tmp_path / "scratch"
    folder.mkdir()
    (folder / "someone-elses.txt").write_text("keep me")
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def test_it_indexes_the_sources_and_removes_only_its_own_folder(
    corpus, fake_encoder, scratch, tmp_path
):
    given_root = tmp_path / "not-used"
    request = IndexRequest(root=given_root, sources=[str(corpus)])
    with temporary_index(request, prefix="bienc-test-") as (report, generation):
        assert report.documents == 4
        assert generation.root.parent.parent == scratch
        assert len(store.document_vectors(generation).doc_ids) == 4
    assert [p.name for p in scratch.iterdir()] == ["someone-elses.txt"]
    assert not given_root.exists()


def test_the_folder_is_removed_when_the_body_fails(corpus, fake_encoder, scratch):
    request = IndexRequest(root=Path(), sources=[str(corpus)])
    with pytest.raises(RuntimeError, match="inside"):
        with temporary_index(request) as _:
            raise RuntimeError("inside")
    assert [p.name for p in scratch.iterdir()] == ["someone-elses.txt"]
