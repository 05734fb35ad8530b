"""Source discovery: walking, ignore files, globs, stdin lists, and what is found on disk."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from bienc_cli.documents import FileEntry, Skipped
from bienc_cli.errors import UsageError
from bienc_cli.sources import SourceOptions, discover, human_size, read_path_list


def write(path: Path, text: str = "x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def found(sources, base: Path, stdin_paths=(), **options) -> list[str]:
    """The relative paths of the files discovered (Skipped left out)."""
    items = list(
        discover([str(s) for s in sources], SourceOptions(**options), stdin_paths=stdin_paths)
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


def test_broken_symlink(tmp_path):
    os.symlink(tmp_path / "missing", tmp_path / "dangling.txt")
    assert skipped([tmp_path]) == [
        Skipped(str(tmp_path / "dangling.txt"), "broken symlink", error=True)
    ]


def test_symlinked_files_are_taken(tmp_path):
    write(tmp_path / "real.txt")
    os.symlink(tmp_path / "real.txt", tmp_path / "link.txt")
    assert found([tmp_path], tmp_path) == ["link.txt", "real.txt"]


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


def test_file_name_not_utf8(tmp_path):
    fd = os.open(os.fsencode(tmp_path) + b"/bad\xff.txt", os.O_CREAT | os.O_WRONLY)
    os.close(fd)
    write(tmp_path / "good.txt")
    items = list(discover([str(tmp_path)], SourceOptions()))
    assert items[0] == Skipped(f"{tmp_path}/bad\\xff.txt", "file name is not valid UTF-8", True)
    assert items[0].path.isprintable()
    assert [i.path for i in items[1:]] == [str(tmp_path / "good.txt")]


def test_stdin_name_not_utf8(tmp_path):
    (name,) = read_path_list(
        io.BytesIO(os.fsencode(tmp_path) + b"/x\xfe.txt"), null_separated=False
    )
    assert skipped([], stdin_paths=[name]) == [
        Skipped(f"{tmp_path}/x\\xfe.txt", "file name is not valid UTF-8", error=True)
    ]


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
    assert items == [Skipped(str(locked), "permission denied", error=True)]


@pytest.mark.parametrize(
    ("size", "text"),
    [(0, "0 B"), (1023, "1023 B"), (1536, "1.5 KiB"), (20 * 2**20, "20 MiB"), (3 * 2**40, "3 TiB")],
)
def test_human_size(size, text):
    assert human_size(size) == text
