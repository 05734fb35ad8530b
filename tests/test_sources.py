"""Source discovery: walking, ignore files, globs, stdin lists, and what is found on disk."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from bienc_cli.errors import UsageError
from bienc_cli.inputs.documents import FileEntry, Skipped
from bienc_cli.inputs.sources import SourceOptions, discover, human_size, read_path_list


def write(path: Path, text: str = "x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def found(sources, base: Path, stdin_paths=(), index=None, **options) -> list[str]:
    """The relative paths of the files discovered (Skipped left out)."""
    items = list(
        discover(
            [str(s) for s in sources],
            SourceOptions(**options),
            stdin_paths=stdin_paths,
            index=index,
        )
    )
    return [os.path.relpath(i.path, base) for i in items if isinstance(i, FileEntry)]


def skipped(sources, stdin_paths=(), **options) -> list[Skipped]:
    items = discover([str(s) for s in sources], SourceOptions(**options), stdin_paths=stdin_paths)
    return [i for i in items if isinstance(i, Skipped)]


# -- walking -----------------------------------------------------------------------------------


def test_walk_is_sorted_recursive_and_absolute(tmp_path):
    for name in ("b.txt", "a/z.md", "a/b/c.txt", "c.txt", "a.txt"):
        write(tmp_path / name)
    items = list(discover([str(tmp_path)], SourceOptions()))
    assert [os.path.relpath(i.path, tmp_path) for i in items] == [
        "a/b/c.txt",
        "a/z.md",
        "a.txt",
        "b.txt",
        "c.txt",
    ]
    first = items[0]
    assert isinstance(first, FileEntry)
    st = os.stat(first.path)
    assert (first.size, first.mtime_ns) == (st.st_size, st.st_mtime_ns)
    assert first.root == str(tmp_path) and os.path.isabs(first.path)


def test_each_path_once(tmp_path, monkeypatch):
    write(tmp_path / "d" / "a.txt")
    write(tmp_path / "d" / "sub" / "b.txt")
    monkeypatch.chdir(tmp_path)
    sources = ["d", "d/sub", "d/a.txt", str(tmp_path / "d" / "a.txt"), "./d/"]
    assert found(sources, tmp_path) == ["d/a.txt", "d/sub/b.txt"]


def test_file_source_root_is_the_file(tmp_path):
    path = write(tmp_path / "one.txt")
    (item,) = discover([str(path)], SourceOptions())
    assert item == FileEntry(str(path), 1, os.stat(path).st_mtime_ns, str(path))


def test_missing_path_raises_usage_error_before_iterating(tmp_path):
    with pytest.raises(UsageError, match="no such file"):
        discover([str(tmp_path / "nope")], SourceOptions())


def test_empty_directory_yields_nothing(tmp_path):
    assert list(discover([str(tmp_path)], SourceOptions())) == []


# -- ignore files ------------------------------------------------------------------------------


def test_gitignore_patterns_directories_and_negation(tmp_path):
    write(tmp_path / ".gitignore", "*.log\n!keep.log\nbuild/\n/top.txt\n")
    for name in (
        "a.log",
        "keep.log",
        "build/out.txt",
        "top.txt",
        "sub/top.txt",
        "sub/b.log",
        "ok.md",
    ):
        write(tmp_path / name)
    assert found([tmp_path], tmp_path) == ["keep.log", "ok.md", "sub/top.txt"]


def test_nested_gitignore_is_relative_to_its_folder_and_overrides_parents(tmp_path):
    write(tmp_path / ".gitignore", "*.log\n")
    write(tmp_path / "sub" / ".gitignore", "!important.log\n/local.txt\n")
    for name in ("x.log", "local.txt", "sub/important.log", "sub/other.log", "sub/local.txt"):
        write(tmp_path / name)
    write(tmp_path / "sub" / "deeper" / "local.txt")
    assert found([tmp_path], tmp_path) == ["local.txt", "sub/deeper/local.txt", "sub/important.log"]


def test_excluded_folder_cannot_be_reincluded(tmp_path):
    # git: "It is not possible to re-include a file if a parent directory of that file is excluded."
    write(tmp_path / ".gitignore", "build/\n!build/keep.txt\n")
    write(tmp_path / "build" / "keep.txt")
    assert found([tmp_path], tmp_path) == []


def test_biencignore_same_syntax_and_overrides_gitignore(tmp_path):
    write(tmp_path / ".gitignore", "*.csv\n")
    write(tmp_path / ".biencignore", "drafts/\n!wanted.csv\n")
    for name in ("drafts/a.md", "data.csv", "wanted.csv", "notes.md"):
        write(tmp_path / name)
    assert found([tmp_path], tmp_path) == ["notes.md", "wanted.csv"]


def test_ignore_files_can_be_turned_off(tmp_path):
    write(tmp_path / ".gitignore", "*.log\n")
    write(tmp_path / "a.log")
    assert found([tmp_path], tmp_path, use_ignore_files=False) == ["a.log"]


def test_parent_gitignores_up_to_the_repo_root(tmp_path):
    write(tmp_path / ".gitignore", "*.md\n")  # above the repo: not honoured
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    write(repo / ".gitignore", "*.tmp\n")
    write(repo / "sub" / ".gitignore", "secret/\n")
    for name in ("a.tmp", "b.md", "secret/s.txt", "c.txt"):
        write(repo / "sub" / "deep" / name)
    assert found([repo / "sub" / "deep"], repo) == ["sub/deep/b.md", "sub/deep/c.txt"]


def test_no_parent_gitignores_outside_a_repo(tmp_path):
    write(tmp_path / ".gitignore", "*.md\n")
    write(tmp_path / "sub" / "a.md")
    assert found([tmp_path / "sub"], tmp_path) == ["sub/a.md"]


def test_walking_a_folder_its_parent_ignores(tmp_path):
    (tmp_path / ".git").mkdir()
    write(tmp_path / ".gitignore", "build/\n")
    write(tmp_path / "build" / "a.txt")
    assert found([tmp_path / "build"], tmp_path) == ["build/a.txt"]


def test_never_descends_into_git(tmp_path):
    write(tmp_path / ".git" / "config")
    write(tmp_path / "a.txt")
    assert found([tmp_path], tmp_path, hidden=True) == ["a.txt"]


# -- hidden, explicit files, --include/--exclude -----------------------------------------------


def test_hidden_files_and_folders(tmp_path):
    for name in (".env", ".config/a.txt", "visible.txt"):
        write(tmp_path / name)
    assert found([tmp_path], tmp_path) == ["visible.txt"]
    assert found([tmp_path], tmp_path, hidden=True) == [".config/a.txt", ".env", "visible.txt"]


def test_explicit_files_skip_ignore_and_hidden_rules_but_not_exclude(tmp_path):
    write(tmp_path / ".gitignore", "*.log\n")
    log = write(tmp_path / "a.log")
    dot = write(tmp_path / ".hidden.txt")
    assert found([log, dot], tmp_path) == ["a.log", ".hidden.txt"]
    assert found([log, dot], tmp_path, exclude=("*.log",)) == [".hidden.txt"]
    assert found([log, dot], tmp_path, include=("*.txt",)) == [".hidden.txt"]


def test_explicit_broken_symlink_is_reported_not_an_error(tmp_path):
    os.symlink(tmp_path / "missing", tmp_path / "dangling.txt")
    assert skipped([tmp_path / "dangling.txt"]) == [
        Skipped(str(tmp_path / "dangling.txt"), "broken symlink", error=True)
    ]


def test_include_matches_basename_or_relative_path(tmp_path):
    for name in ("a.md", "b.txt", "docs/c.md", "docs/api/d.md", "docs/e.txt"):
        write(tmp_path / name)
    assert found([tmp_path], tmp_path, include=("*.md",)) == ["a.md", "docs/api/d.md", "docs/c.md"]
    assert found([tmp_path], tmp_path, include=("docs/**/*.md",)) == ["docs/api/d.md", "docs/c.md"]


def test_exclude_prunes_folders_and_matches_basenames(tmp_path):
    for name in ("drafts/a.md", "drafts/x/b.md", "keep.md", "node_modules/m.js", "z.tmp"):
        write(tmp_path / name)
    result = found([tmp_path], tmp_path, exclude=("drafts/**", "node_modules", "*.tmp"))
    assert result == ["keep.md"]


# -- globs -------------------------------------------------------------------------------------


def test_glob_source(tmp_path, monkeypatch):
    for name in ("docs/a.md", "docs/sub/b.md", "docs/c.txt", "other/d.md"):
        write(tmp_path / name)
    monkeypatch.chdir(tmp_path)
    items = [i for i in discover(["docs/**/*.md"], SourceOptions()) if isinstance(i, FileEntry)]
    assert [os.path.relpath(i.path, tmp_path) for i in items] == ["docs/a.md", "docs/sub/b.md"]
    assert {i.root for i in items} == {str(tmp_path / "docs")}


def test_glob_matching_folders_walks_them(tmp_path, monkeypatch):
    for name in ("p1/a.txt", "p1/deep/b.txt", "p2/c.txt", "q/d.txt"):
        write(tmp_path / name)
    monkeypatch.chdir(tmp_path)
    assert found(["p*"], tmp_path) == ["p1/a.txt", "p1/deep/b.txt", "p2/c.txt"]
    assert found(["**"], tmp_path) == ["p1/a.txt", "p1/deep/b.txt", "p2/c.txt", "q/d.txt"]


def test_glob_results_honour_ignore_files_and_exclude(tmp_path, monkeypatch):
    write(tmp_path / ".gitignore", "node_modules/\n")
    for name in ("a.md", "node_modules/pkg/readme.md", "vendor/v.md"):
        write(tmp_path / name)
    monkeypatch.chdir(tmp_path)
    assert found(["**/*.md"], tmp_path, exclude=("vendor",)) == ["a.md"]


def test_glob_matching_nothing_is_a_usage_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError, match="matches nothing"):
        discover(["*.nothing"], SourceOptions())


# -- stdin lists -------------------------------------------------------------------------------


def test_read_path_list_newlines():
    stream = io.BytesIO(b"a.txt\r\nb dir/c.txt\n\n\nlast")
    assert read_path_list(stream, null_separated=False) == ["a.txt", "b dir/c.txt", "last"]


def test_read_path_list_nul_keeps_newlines_in_names():
    stream = io.BytesIO(b"odd\nname.txt\0\0plain.txt\0")
    assert read_path_list(stream, null_separated=True) == ["odd\nname.txt", "plain.txt"]


def test_read_path_list_keeps_undecodable_names():
    (name,) = read_path_list(io.BytesIO(b"bad\xff.txt\n"), null_separated=False)
    assert os.fsencode(name) == b"bad\xff.txt"


def test_stdin_paths(tmp_path):
    odd = write(tmp_path / "odd\nname.txt")
    write(tmp_path / "dir" / "inside.txt")
    listed = io.BytesIO(
        b"\0".join(os.fsencode(p) for p in (odd, tmp_path / "dir", tmp_path / "gone"))
    )
    paths = read_path_list(listed, null_separated=True)
    items = list(discover([], SourceOptions(), stdin_paths=paths))
    assert [i.path for i in items if isinstance(i, FileEntry)] == [
        str(odd),
        str(tmp_path / "dir" / "inside.txt"),
    ]
    assert [i for i in items if isinstance(i, Skipped)] == [
        Skipped(str(tmp_path / "gone"), "not found", error=True)
    ]


# -- what is found on disk ---------------------------------------------------------------------


def test_broken_symlink_when_following(tmp_path):
    os.symlink(tmp_path / "missing", tmp_path / "dangling.txt")
    assert skipped([tmp_path], follow_symlinks=True) == [
        Skipped(str(tmp_path / "dangling.txt"), "broken symlink", error=True)
    ]
    # not followed, a link is not looked at: where it points does not matter
    assert skipped([tmp_path]) == [Skipped(str(tmp_path / "dangling.txt"), NOT_FOLLOWED)]


NOT_FOLLOWED = "symlink (not followed; pass --follow-symlinks)"
DIR_NOT_FOLLOWED = "symlink to a directory (not followed; pass --follow-symlinks)"


@pytest.fixture
def linked(tmp_path):
    """A corpus with file and folder symlinks, to targets inside it and outside it."""
    outside = tmp_path / "outside"
    write(outside / "secret.txt", "a file outside the corpus")
    write(outside / "dir" / "deep.txt", "a folder outside the corpus")
    corpus = tmp_path / "corpus"
    write(corpus / "real.txt")
    write(corpus / "sub" / "inner.txt")
    os.symlink(corpus / "real.txt", corpus / "in-file.txt")
    os.symlink(corpus / "sub", corpus / "in-dir")
    os.symlink(outside / "secret.txt", corpus / "hostname.txt")  # like -> /etc/hostname
    os.symlink(outside / "dir", corpus / "out-dir")
    return corpus


def test_symlinks_found_while_walking_are_not_followed(linked, tmp_path):
    # as grep -r and ripgrep: neither file nor folder links, wherever they point
    assert found([linked], linked) == ["real.txt", "sub/inner.txt"]
    assert skipped([linked]) == [
        Skipped(str(linked / "hostname.txt"), NOT_FOLLOWED),
        Skipped(str(linked / "in-dir"), DIR_NOT_FOLLOWED),
        Skipped(str(linked / "in-file.txt"), NOT_FOLLOWED),
        Skipped(str(linked / "out-dir"), DIR_NOT_FOLLOWED),
    ]


def test_follow_symlinks_follows_file_and_folder_links(linked):
    assert found([linked], linked, follow_symlinks=True) == [
        "hostname.txt",
        "in-dir/inner.txt",
        "in-file.txt",
        "out-dir/deep.txt",
        "real.txt",
        "sub/inner.txt",
    ]


def test_symlinks_named_on_the_command_line_are_followed(linked, tmp_path):
    named = [linked / "hostname.txt", linked / "out-dir", linked / "in-file.txt"]
    assert found(named, linked) == ["hostname.txt", "out-dir/deep.txt", "in-file.txt"]
    # and so are the ones listed on stdin
    assert found([], linked, stdin_paths=[str(p) for p in named]) == [
        "hostname.txt",
        "out-dir/deep.txt",
        "in-file.txt",
    ]
    # a named folder is followed; the links inside it are found, not named
    os.symlink(linked / "in-dir", tmp_path / "link-to-link")
    assert found([linked / "out-dir", tmp_path / "link-to-link"], tmp_path) == [
        "corpus/out-dir/deep.txt",
        "link-to-link/inner.txt",
    ]


def test_glob_wildcards_do_not_follow_symlinks(linked, monkeypatch):
    monkeypatch.chdir(linked)
    assert found(["*.txt"], linked) == ["real.txt"]
    assert found(["**/*.txt"], linked) == ["real.txt", "sub/inner.txt"]
    assert found(["*"], linked) == ["real.txt", "sub/inner.txt"]
    reasons = {os.path.basename(s.path): s.reason for s in skipped(["*"])}
    assert reasons == {
        "hostname.txt": NOT_FOLLOWED,
        "in-dir": DIR_NOT_FOLLOWED,
        "in-file.txt": NOT_FOLLOWED,
        "out-dir": DIR_NOT_FOLLOWED,
    }
    assert found(["*.txt"], linked, follow_symlinks=True) == [
        "hostname.txt",
        "in-file.txt",
        "real.txt",
    ]
    # a component written out in the pattern is named, so followed
    assert found(["out-dir/*.txt"], linked) == ["out-dir/deep.txt"]


def test_symlink_loops_when_following_walks_and_globs(tmp_path, monkeypatch):
    write(tmp_path / "a" / "f.txt")
    write(tmp_path / "b" / "g.txt")
    os.symlink("..", tmp_path / "a" / "up")  # a/up -> the root
    os.symlink("../b", tmp_path / "a" / "to-b")  # a/to-b -> b, and b/to-a -> a
    os.symlink("../a", tmp_path / "b" / "to-a")
    expected = ["a/f.txt", "a/to-b/g.txt", "b/g.txt", "b/to-a/f.txt"]
    assert found([tmp_path], tmp_path, follow_symlinks=True) == expected
    loops = [s for s in skipped([tmp_path], follow_symlinks=True) if s.reason == "symlink loop"]
    assert {os.path.relpath(s.path, tmp_path) for s in loops} == {
        "a/up",
        "a/to-b/to-a",
        "b/to-a/to-b",
        "b/to-a/up",
    }
    # glob.glob follows every link, and with two looping links in one folder runs for ever;
    # bienc's expansion does not follow them, or cuts the loops when told to follow
    monkeypatch.chdir(tmp_path)
    assert found(["**/*.txt"], tmp_path) == ["a/f.txt", "b/g.txt"]
    assert found(["**/*.txt"], tmp_path, follow_symlinks=True) == expected
    assert found(["**/f.txt"], tmp_path, follow_symlinks=True) == ["a/f.txt", "b/to-a/f.txt"]


def test_glob_does_not_run_down_a_symlink_loop(tmp_path, monkeypatch):
    write(tmp_path / "a" / "f.txt")
    os.symlink("..", tmp_path / "a" / "up")
    monkeypatch.chdir(tmp_path)
    # glob.glob gave a/f.txt, a/up/a/f.txt, a/up/a/up/a/f.txt ... down to ELOOP
    assert found(["**/*.txt"], tmp_path) == ["a/f.txt"]
    assert found(["**/*.txt"], tmp_path, follow_symlinks=True) == ["a/f.txt"]
    (loop,) = skipped(["**/*.txt"], follow_symlinks=True)
    assert loop == Skipped(str(tmp_path / "a" / "up"), "symlink loop")


# -- bienc indexes in the tree -----------------------------------------------------------------


def fake_index(folder: Path, *, current: bool = True) -> Path:
    """The marks of a bienc index: CURRENT naming a generation whose manifest says so."""
    write(folder / "g000003" / "manifest.json", '{"format": "bienc-index", "format_version": 1}')
    write(folder / "g000003" / "chunks.parquet", "not text to index")
    write(folder / "models" / "tokenizer.json", '{"text": "nor this"}')
    if current:
        write(folder / "CURRENT", "g000003\n")
    return folder


def test_indexes_in_the_tree_are_never_sources(tmp_path):
    write(tmp_path / "notes.txt")
    own = fake_index(tmp_path / "myidx")
    other = fake_index(tmp_path / "projects" / "old-index")
    broken = fake_index(tmp_path / "projects" / "lost-current", current=False)
    write(tmp_path / "leveldb" / "CURRENT", "MANIFEST-000005\n")  # another program's CURRENT
    write(tmp_path / "gardening" / "g000001" / "manifest.json", '{"plants": 3}')
    items = list(discover([str(tmp_path)], SourceOptions(), index=str(own)))
    assert [os.path.relpath(i.path, tmp_path) for i in items if isinstance(i, FileEntry)] == [
        "gardening/g000001/manifest.json",
        "leveldb/CURRENT",
        "notes.txt",
    ]
    # the index being written is left out silently; any other with a note, not an error
    assert [i for i in items if isinstance(i, Skipped)] == [
        Skipped(str(broken), "a bienc index; index folders are never indexed"),
        Skipped(str(other), "a bienc index; index folders are never indexed"),
    ]


def test_a_hidden_index_with_hidden(tmp_path):
    write(tmp_path / "notes.txt")
    own = fake_index(tmp_path / ".bienc")
    other = fake_index(tmp_path / "sub" / ".bienc")
    items = list(discover([str(tmp_path)], SourceOptions(hidden=True), index=str(own)))
    assert items[0].path == str(tmp_path / "notes.txt")
    assert items[1:] == [Skipped(str(other), "a bienc index; index folders are never indexed")]


def test_files_of_an_index_from_globs_and_stdin_are_left_out(tmp_path, monkeypatch):
    write(tmp_path / "table.parquet")
    own = fake_index(tmp_path / "myidx")
    other = fake_index(tmp_path / "other")
    monkeypatch.chdir(tmp_path)
    assert found(["**/*.parquet"], tmp_path, index=str(own)) == ["table.parquet"]
    listed = [str(p) for p in sorted(tmp_path.rglob("*")) if p.is_file()]
    items = list(discover([], SourceOptions(), stdin_paths=listed, index=str(own)))
    assert [os.path.relpath(i.path, tmp_path) for i in items] == [
        "other/CURRENT",
        "other/g000003/chunks.parquet",
        "other/g000003/manifest.json",
        "other/models/tokenizer.json",
        "table.parquet",
    ]
    assert all(
        i.reason.startswith(f"inside a bienc index ({other})")
        for i in items
        if isinstance(i, Skipped)
    )
    assert [i.path for i in items if isinstance(i, FileEntry)] == [str(tmp_path / "table.parquet")]


@pytest.mark.parametrize("name", ["myidx", "other", "other/g000003", "other/CURRENT"])
def test_naming_an_index_as_a_source_is_a_usage_error(tmp_path, name):
    fake_index(tmp_path / "other")
    (tmp_path / "myidx").mkdir()  # the index being written, before its first generation
    with pytest.raises(UsageError, match="(bienc index|--index folder).*never indexed"):
        discover([str(tmp_path / name)], SourceOptions(), index=str(tmp_path / "myidx"))


def test_symlinked_folders_only_with_follow(tmp_path):
    write(tmp_path / "elsewhere" / "a.txt")
    (tmp_path / "root").mkdir()
    os.symlink(tmp_path / "elsewhere", tmp_path / "root" / "linked")
    assert found([tmp_path / "root"], tmp_path) == []
    (item,) = skipped([tmp_path / "root"])
    assert not item.error and "--follow-symlinks" in item.reason
    assert found([tmp_path / "root"], tmp_path, follow_symlinks=True) == ["root/linked/a.txt"]


def test_symlink_loop_reported_once_when_following(tmp_path):
    write(tmp_path / "a" / "file.txt")
    os.symlink(tmp_path / "a", tmp_path / "a" / "loop")  # a/loop -> a
    os.symlink("self", tmp_path / "self")  # self -> self
    items = list(discover([str(tmp_path)], SourceOptions(follow_symlinks=True)))
    assert items == [
        FileEntry(**{**_entry_fields(tmp_path / "a" / "file.txt"), "root": str(tmp_path)}),
        Skipped(str(tmp_path / "a" / "loop"), "symlink loop", error=False),
        Skipped(str(tmp_path / "self"), "symlink loop", error=False),
    ]


def _entry_fields(path: Path) -> dict:
    st = os.stat(path)
    return {"path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def test_file_name_not_utf8_is_found(tmp_path):
    # as grep and ripgrep: a name is bytes; os.fsdecode keeps them as surrogate escapes
    bad = os.fsencode(tmp_path) + b"/bad\xff.txt"
    with open(bad, "wb") as fh:
        fh.write(b"text")
    write(tmp_path / "folder\udcfe" / "inside.txt")  # a folder name that is not UTF-8 either
    write(tmp_path / "good.txt")
    items = list(discover([str(tmp_path)], SourceOptions()))
    assert all(isinstance(i, FileEntry) for i in items)
    assert [os.fsencode(i.path) for i in items] == [
        bad,
        os.fsencode(tmp_path) + b"/folder\xfe/inside.txt",
        os.fsencode(tmp_path / "good.txt"),
    ]


def test_stdin_name_not_utf8(tmp_path):
    with open(os.fsencode(tmp_path) + b"/x\xfe.txt", "wb") as fh:
        fh.write(b"text")
    (name,) = read_path_list(
        io.BytesIO(os.fsencode(tmp_path) + b"/x\xfe.txt"), null_separated=False
    )
    (item,) = discover([], SourceOptions(), stdin_paths=[name])
    assert isinstance(item, FileEntry) and os.fsencode(item.path).endswith(b"/x\xfe.txt")


def test_fifo_is_not_a_regular_file(tmp_path):
    os.mkfifo(tmp_path / "pipe")
    assert skipped([tmp_path]) == [Skipped(str(tmp_path / "pipe"), "not a regular file")]


def test_max_file_size_spares_tables(tmp_path):
    write(tmp_path / "big.txt", "x" * 11)
    write(tmp_path / "big.csv", "text\n" + "y" * 20)
    write(tmp_path / "small.txt", "x" * 10)
    assert found([tmp_path], tmp_path, max_file_size=10) == ["big.csv", "small.txt"]
    assert skipped([tmp_path], max_file_size=10) == [
        Skipped(str(tmp_path / "big.txt"), "larger than --max-file-size (10 B)")
    ]


def test_unreadable_folder(tmp_path, monkeypatch):
    write(tmp_path / "locked" / "a.txt")
    write(tmp_path / "open" / "b.txt")
    locked = tmp_path / "locked"
    if os.geteuid() != 0:
        locked.chmod(0)
        try:
            items = skipped([tmp_path])
        finally:
            locked.chmod(0o755)
    else:  # root reads anything: make scandir fail the way it would for a normal user
        real_scandir = os.scandir

        def scandir(path):
            if os.fspath(path) == str(locked):
                raise PermissionError(13, "Permission denied", str(path))
            return real_scandir(path)

        monkeypatch.setattr(os, "scandir", scandir)
        items = skipped([tmp_path])
        assert found([tmp_path], tmp_path) == ["open/b.txt"]
    # not listed is not empty: the indexer keeps what it had under it
    assert items == [Skipped(str(locked), "permission denied", error=True, keep=str(locked))]


@pytest.mark.parametrize(
    ("size", "text"),
    [(0, "0 B"), (1023, "1023 B"), (1536, "1.5 KiB"), (20 * 2**20, "20 MiB"), (3 * 2**40, "3 TiB")],
)
def test_human_size(size, text):
    assert human_size(size) == text
