"""File actions: plans, hash checks, the journal and undo; and the safety rules, as properties."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from bienc_cli.actions import apply as actions
from bienc_cli.actions.fs import file_sha256
from bienc_cli.actions.plan import ACTIONS, Plan, PlannedFile, PlannedGroup, read_plan, write_plan
from bienc_cli.actions.signing import key_path, signing_key
from bienc_cli.actions.undo import undo
from bienc_cli.cli.main import app
from bienc_cli.errors import ExitStatus, UsageError

runner = CliRunner()


def bienc(*args, input=None):
    return runner.invoke(app, [str(a) for a in args], input=input, catch_exceptions=False)


def snapshot(root: Path) -> dict[str, tuple[str, bytes]]:
    """Every entry under ``root``: (kind, bytes or link target), to compare trees exactly."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            if path.is_symlink():
                out[rel] = ("link", os.readlink(path).encode())
            elif path.is_dir():
                out[rel] = ("dir", b"")
            else:
                out[rel] = ("file", path.read_bytes())
    return out


def _planned(path: Path, **extra) -> PlannedFile:
    return PlannedFile(str(path), file_sha256(path), path.stat().st_size, **extra)


def make_plan(root: Path, groups: list[tuple[str, list[str]]], tmp: Path, **kw) -> Plan:
    """A plan over files below ``root``, written to ``tmp/plan.json``."""
    plan = Plan(
        roots=[str(root)],
        reference=kw.pop("reference", []),
        groups=[
            PlannedGroup(
                n,
                _planned(root / keeper),
                [_planned(root / m, similarity=0.95, match="near") for m in members],
            )
            for n, (keeper, members) in enumerate(groups, 1)
        ],
        **kw,
    )
    write_plan(plan, tmp / "plan.json")
    return read_plan(tmp / "plan.json")


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "docs"
    (root / "a" / "deep").mkdir(parents=True)
    (root / "keep.txt").write_text("the original text\n")
    (root / "a" / "copy.txt").write_text("the original text\n")
    (root / "a" / "deep" / "reworded.txt").write_text("the text, reworded\n")
    (root / "other.txt").write_text("something else entirely\n")
    return root


GROUPS = [("keep.txt", ["a/copy.txt", "a/deep/reworded.txt"])]


# -- apply and undo, per action --------------------------------------------------------------


def test_move_keeps_the_relative_tree_and_undo_restores(tree, tmp_path):
    before = snapshot(tree)
    plan = make_plan(tree, GROUPS, tmp_path)
    report = actions.apply_plan(plan, "move", to=str(tmp_path / "dups"))
    assert [o.status for o in report.outcomes] == ["done", "done"]
    assert (tmp_path / "dups" / "a" / "copy.txt").read_text() == "the original text\n"
    assert (tmp_path / "dups" / "a" / "deep" / "reworded.txt").exists()
    assert not (tree / "a" / "copy.txt").exists()
    assert (tree / "keep.txt").read_text() == "the original text\n"
    assert report.journal == str(tmp_path / "plan.journal.jsonl")
    undone = undo(Path(report.journal))
    assert [o.status for o in undone.outcomes] == ["done", "done"]
    assert snapshot(tree) == before
    assert not list((tmp_path / "dups").rglob("*"))  # folders it made are gone again


def test_delete_goes_to_a_trash_beside_the_journal(tree, tmp_path):
    before = snapshot(tree)
    plan = make_plan(tree, GROUPS, tmp_path)
    report = actions.apply_plan(plan, "delete")
    assert report.trash == str(tmp_path / ".plan.trash")
    assert (tmp_path / ".plan.trash" / "a" / "deep" / "reworded.txt").exists()
    assert sorted(snapshot(tree)) == ["a", "a/deep", "keep.txt", "other.txt"]
    undo(Path(report.journal))
    assert snapshot(tree) == before
    assert not (tmp_path / ".plan.trash").exists()  # emptied by the undo, so removed


@pytest.mark.parametrize("action", ["hardlink", "symlink"])
def test_links_replace_duplicates_and_undo_restores_their_bytes(tree, tmp_path, action):
    before = snapshot(tree)
    plan = make_plan(tree, GROUPS, tmp_path)
    report = actions.apply_plan(plan, action)
    assert {o.status for o in report.outcomes} == {"done"}
    for member in ("a/copy.txt", "a/deep/reworded.txt"):
        path = tree / member
        assert os.path.samefile(path, tree / "keep.txt")
        assert path.is_symlink() == (action == "symlink")
        if action == "symlink":
            assert not os.path.isabs(os.readlink(path))  # relative: survives moving the tree
    assert (tree / "a" / "deep" / "reworded.txt").read_text() == "the original text\n"
    undo(Path(report.journal))
    assert snapshot(tree) == before


@pytest.mark.parametrize("action", ACTIONS)
def test_applying_twice_changes_nothing_the_second_time(tree, tmp_path, action):
    plan = make_plan(tree, GROUPS, tmp_path)
    to = str(tmp_path / "dups") if action == "move" else None
    actions.apply_plan(plan, action, to=to)
    after_first = snapshot(tmp_path)
    second = actions.apply_plan(plan, action, to=to)
    assert {o.status for o in second.outcomes} == {"already"}
    assert snapshot(tmp_path) == after_first


def test_dry_run_changes_nothing_and_writes_no_journal(tree, tmp_path):
    plan = make_plan(tree, GROUPS, tmp_path)
    before = snapshot(tmp_path)
    report = actions.apply_plan(plan, "delete", dry_run=True)
    assert [o.status for o in report.outcomes] == ["would", "would"]
    assert snapshot(tmp_path) == before


# -- what is refused -------------------------------------------------------------------------


def test_a_file_changed_since_the_plan_is_skipped(tree, tmp_path):
    plan = make_plan(tree, GROUPS, tmp_path)
    (tree / "a" / "copy.txt").write_text("edited after the plan\n")
    report = actions.apply_plan(plan, "delete")
    assert [(o.status, o.reason) for o in report.outcomes] == [
        ("skipped", "changed since the plan"),
        ("done", ""),
    ]
    assert (tree / "a" / "copy.txt").read_text() == "edited after the plan\n"


@pytest.mark.parametrize("change", ["edit", "remove"])
def test_members_of_a_changed_or_missing_keeper_are_left_alone(tree, tmp_path, change):
    plan = make_plan(tree, GROUPS, tmp_path)
    if change == "edit":
        (tree / "keep.txt").write_text("the keeper changed\n")
    else:
        (tree / "keep.txt").unlink()
    before = snapshot(tree)
    report = actions.apply_plan(plan, "delete")
    assert {o.status for o in report.outcomes} == {"skipped"}
    assert all(o.reason.startswith("keeper") for o in report.outcomes)
    assert snapshot(tree) == before


def test_a_member_that_is_a_link_to_its_keeper_is_never_removed(tree, tmp_path):
    """Removing it would remove nothing, or (keeper -> member) the last copy."""
    (tree / "link.txt").symlink_to("keep.txt")
    plan = make_plan(tree, [("link.txt", ["keep.txt"])], tmp_path)
    report = actions.apply_plan(plan, "delete")
    assert report.outcomes[0].status == "already"
    assert (tree / "keep.txt").read_text() == "the original text\n"


def test_a_plan_where_a_keeper_is_also_a_duplicate_is_refused(tree, tmp_path):
    plan = make_plan(tree, [("keep.txt", ["a/copy.txt"]), ("a/copy.txt", ["other.txt"])], tmp_path)
    with pytest.raises(UsageError, match="both as a keeper and as a duplicate"):
        actions.apply_plan(plan, "delete")


def test_files_outside_the_roots_or_under_reference_are_never_touched(tree, tmp_path):
    outside = tmp_path / "elsewhere.txt"
    outside.write_text("the original text\n")
    plan = make_plan(tree, GROUPS, tmp_path, reference=[str(tree / "a" / "deep")])
    # A plan made in this process (not read from a file) is trusted to be bienc's own; its
    # members are still checked against the roots one by one.
    plan.groups[0].members.append(_planned(outside))
    report = actions.apply_plan(plan, "delete")
    assert [(Path(o.path).name, o.status, o.reason) for o in report.outcomes] == [
        ("copy.txt", "done", ""),
        ("reworded.txt", "skipped", "under a reference folder"),
        ("elsewhere.txt", "skipped", "outside the roots"),
    ]
    assert outside.exists() and (tree / "a" / "deep" / "reworded.txt").exists()


def test_move_never_overwrites(tree, tmp_path):
    plan = make_plan(tree, GROUPS, tmp_path)
    (tmp_path / "dups" / "a").mkdir(parents=True)
    (tmp_path / "dups" / "a" / "copy.txt").write_text("already here\n")
    report = actions.apply_plan(plan, "move", to=str(tmp_path / "dups"))
    assert report.outcomes[0].status == "skipped" and "already exists" in report.outcomes[0].reason
    assert (tmp_path / "dups" / "a" / "copy.txt").read_text() == "already here\n"


@pytest.mark.parametrize(
    "content",
    ["not json", json.dumps({"format": "other"}), json.dumps({"format": "bienc-dedup-plan"})],
)
def test_bad_plans_are_usage_errors(tmp_path, content):
    (tmp_path / "plan.json").write_text(content)
    with pytest.raises(UsageError):
        read_plan(tmp_path / "plan.json")


# -- the journal: crashes and undo -----------------------------------------------------------


def test_undo_after_a_crash_between_intent_and_done(tree, tmp_path):
    """The journal says "about to move", the move happened, then the process died."""
    before = snapshot(tree)
    plan = make_plan(tree, GROUPS, tmp_path)
    report = actions.apply_plan(plan, "delete")
    journal = Path(report.journal)
    lines = journal.read_text().splitlines()
    journal.write_text("\n".join(ln for ln in lines if '"op": "done"' not in ln) + "\n")
    undo(journal)
    assert snapshot(tree) == before


def test_undo_of_an_intent_that_never_happened(tree, tmp_path, monkeypatch):
    """The process died after writing "about to move" and before moving; the last line is torn."""
    before = snapshot(tree)
    plan = make_plan(tree, GROUPS, tmp_path)

    def crash(src, dest):
        raise SystemExit("killed")

    with monkeypatch.context() as patch, pytest.raises(SystemExit):
        patch.setattr(actions, "move_file", crash)
        actions.apply_plan(plan, "delete")
    journal = tmp_path / "plan.journal.jsonl"
    journal.write_text(journal.read_text() + '{"op": "do", "se')
    result = undo(journal)
    assert [(o.status, o.reason) for o in result.outcomes] == [
        ("already", "in place (the action never happened)")
    ]
    assert snapshot(tree) == before


def test_undo_twice_is_harmless(tree, tmp_path):
    before = snapshot(tree)
    report = actions.apply_plan(make_plan(tree, GROUPS, tmp_path), "move", to=str(tmp_path / "d"))
    undo(Path(report.journal))
    again = undo(Path(report.journal))
    assert again.outcomes == []
    assert snapshot(tree) == before


def test_undo_does_not_overwrite_a_new_file(tree, tmp_path):
    report = actions.apply_plan(make_plan(tree, GROUPS, tmp_path), "delete")
    (tree / "a" / "copy.txt").write_text("a new file in the old place\n")
    result = undo(Path(report.journal))
    statuses = {Path(o.path).name: o.status for o in result.outcomes}
    assert statuses == {"copy.txt": "skipped", "reworded.txt": "done"}
    assert (tree / "a" / "copy.txt").read_text() == "a new file in the old place\n"


def test_a_journal_that_is_not_one(tmp_path):
    (tmp_path / "j.jsonl").write_text('{"op": "nothing"}\n')
    with pytest.raises(UsageError):
        undo(tmp_path / "j.jsonl")
    with pytest.raises(UsageError):
        undo(tmp_path / "missing.jsonl")


# -- the safety rules as properties ----------------------------------------------------------


_contents = st.sampled_from([b"alpha\n", b"beta\n", b"alpha\n\n", b"", b"\x00\xff binary"])


@st.composite
def _scenarios(draw):
    n_files = draw(st.integers(2, 8))
    contents = [draw(_contents) for _ in range(n_files)]
    folders = [draw(st.sampled_from(["", "x/", "x/y/", "z/"])) for _ in range(n_files)]
    names = [f"{folder}f{i}.txt" for i, folder in enumerate(folders)]
    order = draw(st.permutations(range(n_files)))
    groups, start = [], 0
    while start < n_files - 1:
        size = draw(st.integers(2, max(2, n_files - start)))
        chunk = [names[i] for i in order[start : start + size]]
        if len(chunk) >= 2:
            groups.append((chunk[0], chunk[1:]))
        start += size
    action = draw(st.sampled_from(ACTIONS))
    return dict(zip(names, contents)), groups, action


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_scenarios())
def test_keepers_survive_reapplying_is_idle_and_undo_restores_every_byte(scenario):
    files, groups, action = scenario
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        root = tmp / "root"
        for name, data in files.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(data)
        before = snapshot(root)
        plan = make_plan(root, groups, tmp)
        to = str(tmp / "moved") if action == "move" else None
        report = actions.apply_plan(plan, action, to=to)
        assert {o.status for o in report.outcomes} <= {"done"}
        for keeper, _ in groups:  # no keeper is ever moved, deleted or changed
            assert before[keeper] == ("file", (root / keeper).read_bytes())
            assert not (root / keeper).is_symlink()
        for _, members in groups:
            for member in members:
                path = root / member
                if action in ("move", "delete"):
                    assert not os.path.lexists(path)
                else:
                    assert path.read_bytes() == (root / _keeper_of(groups, member)).read_bytes()
        after = snapshot(tmp)
        second = actions.apply_plan(plan, action, to=to)
        assert {o.status for o in second.outcomes} <= {"already"}
        assert snapshot(tmp) == after
        undo(Path(report.journal))
        assert snapshot(root) == before


def _keeper_of(groups, member):
    return next(keeper for keeper, members in groups if member in members)


# -- the command line ------------------------------------------------------------------------


@pytest.fixture
def dup_tree(tmp_path):
    root = tmp_path / "docs"
    (root / "archive").mkdir(parents=True)
    (root / "ref").mkdir()
    text = "Sourdough starter needs flour and water fed every day at room temperature.\n"
    (root / "starter.md").write_text(text)
    (root / "archive" / "starter-copy.md").write_text(text)
    (root / "ref" / "starter-reference.md").write_text(text)
    (root / "rockets.txt").write_text("Rockets burn fuel to reach orbit around the earth.\n")
    return root


def test_cli_report_only_changes_nothing(dup_tree, fake_encoder, tmp_path):
    before = snapshot(tmp_path)
    result = bienc("dedup", dup_tree)
    assert result.exit_code == ExitStatus.OK
    assert snapshot(tmp_path) == before


def test_cli_plan_review_apply_undo(dup_tree, fake_encoder, tmp_path):
    before = snapshot(dup_tree)
    plan = tmp_path / "review" / "plan.json"
    result = bienc("dedup", dup_tree, "--plan", plan, "--reference", dup_tree / "ref")
    assert result.exit_code == 0 and "bienc dedup --apply" in result.stderr
    assert snapshot(dup_tree) == before  # a plan changes nothing
    data = json.loads(plan.read_text())
    [group] = data["groups"]
    assert group["keeper"]["path"].endswith("ref/starter-reference.md")
    assert sorted(Path(m["path"]).name for m in group["members"]) == [
        "starter-copy.md",
        "starter.md",
    ]
    result = bienc("dedup", "--apply", plan, "--action", "move", "--to", tmp_path / "dups")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "dups" / "archive" / "starter-copy.md").exists()
    assert "bienc dedup --undo" in result.stderr
    journal = tmp_path / "review" / "plan.journal.jsonl"
    result = bienc("dedup", "--undo", journal)
    assert result.exit_code == 0 and result.stdout.count("restored") == 2
    assert snapshot(dup_tree) == before


def test_cli_delete_needs_yes_without_a_terminal(dup_tree, fake_encoder, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = snapshot(dup_tree)
    result = bienc("dedup", dup_tree, "--action", "delete")
    assert result.exit_code == ExitStatus.USAGE and "--yes" in result.stderr
    assert snapshot(dup_tree) == before
    result = bienc("dedup", dup_tree, "--action", "delete", "--dry-run")
    assert result.exit_code == 0 and "would be deleted" in result.stdout
    assert snapshot(dup_tree) == before and not (tmp_path / ".bienc-dedup").exists()
    result = bienc("dedup", dup_tree, "--action", "delete", "--yes")
    assert result.exit_code == 0, result.output
    assert result.stdout.count("deleted") == 2
    [journal] = (tmp_path / ".bienc-dedup").glob("*/plan.journal.jsonl")
    assert bienc("dedup", "--undo", journal).exit_code == 0
    assert snapshot(dup_tree) == before


def test_cli_apply_reports_changed_files_with_exit_3(dup_tree, fake_encoder, tmp_path):
    plan = tmp_path / "plan.json"
    bienc("dedup", dup_tree, "--plan", plan, "--action", "symlink")
    (dup_tree / "starter.md").write_text("changed since the plan\n")
    result = bienc("dedup", "--apply", plan, "-f", "json")  # the plan's own action
    assert result.exit_code == ExitStatus.PARTIAL
    report = json.loads(result.stdout)
    assert report["action"] == "symlink"
    assert report["counts"]["done"] == 1 and report["counts"]["skipped"] == 1


def test_cli_apply_needs_an_action(dup_tree, fake_encoder, tmp_path):
    plan = tmp_path / "plan.json"
    bienc("dedup", dup_tree, "--plan", plan)
    result = bienc("dedup", "--apply", plan)
    assert result.exit_code == ExitStatus.USAGE and "--action" in result.stderr
    result = bienc("dedup", dup_tree, "--apply", plan, "--action", "delete")
    assert result.exit_code == ExitStatus.USAGE


def test_a_file_another_keeper_links_to_is_kept(tree, tmp_path):
    (tree / "link-keeper.txt").symlink_to("a/copy.txt")
    plan = make_plan(
        tree, [("keep.txt", ["a/copy.txt"]), ("link-keeper.txt", ["other.txt"])], tmp_path
    )
    report = actions.apply_plan(plan, "delete")
    assert [(Path(o.path).name, o.status) for o in report.outcomes] == [
        ("copy.txt", "skipped"),
        ("other.txt", "done"),
    ]
    assert (tree / "link-keeper.txt").read_text() == "the original text\n"


def test_cli_apply_uses_the_plans_action_and_destination(dup_tree, fake_encoder, tmp_path):
    plan = tmp_path / "plan.json"
    before = snapshot(dup_tree)
    result = bienc("dedup", dup_tree, "--plan", plan, "--action", "move", "--to", tmp_path / "d")
    assert result.exit_code == 0
    assert snapshot(dup_tree) == before  # planning moves nothing
    result = bienc("dedup", "--apply", plan, "--dry-run")
    assert result.exit_code == 0 and result.stdout.count("would be moved") == 2
    assert not (tmp_path / "d").exists()
    assert bienc("dedup", "--apply", plan).exit_code == 0
    # the keeper, first in path order, is archive/starter-copy.md
    assert sorted(str(p.relative_to(tmp_path / "d")) for p in (tmp_path / "d").rglob("*.md")) == [
        "ref/starter-reference.md",
        "starter.md",
    ]


def test_cli_interrupted_apply_says_how_to_undo(dup_tree, fake_encoder, tmp_path, monkeypatch):
    plan = tmp_path / "plan.json"
    bienc("dedup", dup_tree, "--plan", plan)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(actions, "apply_plan", interrupted)
    result = bienc("dedup", "--apply", plan, "--action", "symlink")
    assert result.exit_code == ExitStatus.INTERRUPTED
    assert "bienc dedup --undo" in result.stderr and "plan.journal.jsonl" in result.stderr


def test_a_failed_link_leaves_the_file_and_undo_agrees(tree, tmp_path, monkeypatch):
    before = snapshot(tree)

    def cross_device(src, dst):
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", cross_device)
    report = actions.apply_plan(make_plan(tree, GROUPS, tmp_path), "hardlink")
    assert {(o.status, o.reason) for o in report.outcomes} == {
        ("failed", "Invalid cross-device link")
    }
    assert snapshot(tree) == before
    result = undo(Path(report.journal))
    assert {o.status for o in result.outcomes} == {"already"}
    assert snapshot(tree) == before


def test_a_link_that_cannot_be_put_in_place_is_rolled_back(tree, tmp_path, monkeypatch):
    before = snapshot(tree)
    real_rename, real_link = os.rename, os.link

    def no_link_in_place(src, dst, **kwargs):
        if ".bienc-link-" in str(src):
            raise OSError(13, "Permission denied")
        return (real_link if kwargs else real_rename)(src, dst, **kwargs)

    # however the link is moved to its place (a hard link of the name, or a rename)
    monkeypatch.setattr(os, "rename", no_link_in_place)
    monkeypatch.setattr(os, "link", no_link_in_place)
    report = actions.apply_plan(make_plan(tree, GROUPS, tmp_path), "symlink")
    assert {o.status for o in report.outcomes} == {"failed"}
    assert snapshot(tree) == before  # originals back, no stray link


def test_cli_action_with_nothing_to_do_leaves_nothing_behind(
    corpus, fake_encoder, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    result = bienc("dedup", corpus, "--action", "delete", "--yes")
    assert result.exit_code == ExitStatus.NO_RESULTS
    assert not (tmp_path / ".bienc-dedup").exists()


# -- a plan or journal edited by hand acts only where bienc recorded -------------------------


@pytest.fixture
def outsider(tmp_path):
    """A file outside every root with the same bytes as the planned duplicates."""
    folder = tmp_path / "outside"
    folder.mkdir()
    path = folder / "important.md"
    path.write_text("Sourdough starter needs flour and water fed every day at room temperature.\n")
    return path


def _cli_plan(dup_tree, tmp_path, *args):
    plan = tmp_path / "plan.json"
    result = bienc("dedup", dup_tree, "--plan", plan, *args)
    assert result.exit_code == 0, result.output
    return plan, json.loads(plan.read_text())


def _entry(path: Path) -> dict:
    return {"path": str(path), "sha256": file_sha256(path), "size": path.stat().st_size}


def _widen_roots_and_add(data, outsider):
    data["roots"] = ["/"]
    data["groups"][0]["members"].append(_entry(outsider))


def _widen_resolved_roots(data, outsider):
    data["roots"] = data["resolved_roots"] = ["/"]
    data["groups"][0]["members"].append(_entry(outsider) | {"mac": "0" * 32})


def _add_member(data, outsider):
    data["groups"][0]["members"].append(_entry(outsider))


def _copy_a_mac(data, outsider):
    mac = data["groups"][0]["members"][0]["mac"]
    data["groups"][0]["members"].append(_entry(outsider) | {"mac": mac})


def _redirect_a_member(data, outsider):
    data["groups"][0]["members"][0] |= _entry(outsider)


def _swap_keeper(data, outsider):
    group = data["groups"][0]
    group["keeper"], group["members"][0] = group["members"][0], group["keeper"]


def _drop_reference(data, outsider):
    data["reference"] = []


def _change_destination(data, outsider):
    data["to"] = str(outsider.parent)


@pytest.mark.parametrize(
    "edit",
    [
        _widen_roots_and_add,
        _widen_resolved_roots,
        _add_member,
        _copy_a_mac,
        _redirect_a_member,
        _swap_keeper,
        _drop_reference,
        _change_destination,
    ],
)
def test_a_plan_edited_beyond_deleting_entries_is_refused(
    dup_tree, fake_encoder, tmp_path, outsider, edit
):
    """The issue's attack: `"roots": ["/"]` plus a member elsewhere with its right sha256."""
    plan, data = _cli_plan(
        dup_tree, tmp_path, "--reference", dup_tree / "ref", "--action", "move", "--to",
        tmp_path / "dups",
    )  # fmt: skip
    edit(data, outsider)
    plan.write_text(json.dumps(data))
    before = snapshot(tmp_path)
    result = bienc("dedup", "--apply", plan, "--action", "move", "--to", tmp_path / "dups")
    assert result.exit_code == ExitStatus.USAGE, result.output
    assert "nothing was changed" in result.stderr and "Traceback" not in result.output
    assert snapshot(tmp_path) == before  # no file moved, no journal, no folder made


def test_a_reviewed_plan_may_lose_members_and_groups(tmp_path, fake_encoder):
    """The documented review: delete the entries of files to leave alone, then apply."""
    root = tmp_path / "docs"
    root.mkdir()
    for stem, text in (("a", "apples grow on trees in autumn"), ("b", "rivers run to the sea")):
        for n in range(3):
            (root / f"{stem}{n}.txt").write_text(text + "\n")
    plan, data = _cli_plan(root, tmp_path)
    assert [len(g["members"]) for g in data["groups"]] == [2, 2]
    del data["groups"][0]["members"][1]  # a1.txt, a2.txt: keep a2.txt
    del data["groups"][1]  # leave the whole b group alone
    plan.write_text(json.dumps(data, indent=4))  # reformatted too: signatures are of values
    result = bienc("dedup", "--apply", plan, "--action", "delete", "--yes")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in root.iterdir()) == [
        "a0.txt",
        "a2.txt",
        "b0.txt",
        "b1.txt",
        "b2.txt",
    ]
    result = bienc("dedup", "--undo", tmp_path / "plan.journal.jsonl")
    assert result.exit_code == 0, result.output
    assert len(list(root.iterdir())) == 6


def test_a_plan_is_applied_only_with_the_key_that_signed_it(
    dup_tree, fake_encoder, tmp_path, monkeypatch
):
    plan, _ = _cli_plan(dup_tree, tmp_path)
    before = snapshot(tmp_path)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "another-user"))
    result = bienc("dedup", "--apply", plan, "--action", "delete", "--yes")
    assert result.exit_code == ExitStatus.USAGE and "no signing key" in result.stderr
    signing_key(create=True)  # another user's key: the signature does not match
    (tmp_path / "another-user").rename(tmp_path.parent / f"{tmp_path.name}-another-user")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path.parent / f"{tmp_path.name}-another-user"))
    result = bienc("dedup", "--apply", plan, "--action", "delete", "--yes")
    assert result.exit_code == ExitStatus.USAGE and "another user" in result.stderr
    assert snapshot(tmp_path) == before


def test_a_plan_without_signatures_is_refused(dup_tree, fake_encoder, tmp_path):
    plan, data = _cli_plan(dup_tree, tmp_path)
    for name in ("signature", "plan_id", "resolved_roots"):
        del data[name]
    plan.write_text(json.dumps(data))
    result = bienc("dedup", "--apply", plan, "--action", "symlink")
    assert result.exit_code == ExitStatus.USAGE and "no bienc signature" in result.stderr


def test_the_signing_key_is_private_and_refused_when_it_is_not():
    key = signing_key(create=True)
    path = key_path()
    assert os.stat(path).st_mode & 0o777 == 0o600 and os.stat(path.parent).st_mode & 0o077 == 0
    assert signing_key(create=True) == key  # made once
    os.chmod(path, 0o644)
    with pytest.raises(UsageError, match="chmod 600"):
        signing_key(create=False)


def _swap_for_link(folder: Path, target: Path) -> None:
    """Replace ``folder`` by a symlink to ``target``, which gets the same files."""
    import shutil

    shutil.copytree(folder, target)
    shutil.rmtree(folder)
    folder.symlink_to(target)


@pytest.mark.parametrize("where", ["folder", "root"])
def test_members_resolving_outside_the_roots_are_skipped(tree, tmp_path, where):
    """A folder in the roots (or the root itself) became a link since the plan: its files are
    elsewhere now, even with the planned bytes, and are left alone."""
    plan = make_plan(tree, GROUPS, tmp_path)
    if where == "folder":
        _swap_for_link(tree / "a", tmp_path / "elsewhere")
    else:
        _swap_for_link(tree, tmp_path / "elsewhere")
    before = snapshot(tmp_path / "elsewhere")
    report = actions.apply_plan(plan, "delete")
    assert {o.status for o in report.outcomes} == {"skipped"}
    assert all("outside the roots" in o.reason for o in report.outcomes)
    assert snapshot(tmp_path / "elsewhere") == before


def test_a_member_path_through_dotdot_is_outside(tree, tmp_path, outsider):
    plan = make_plan(tree, GROUPS, tmp_path)
    sneaky = tree / "a" / ".." / ".." / "outside" / outsider.name
    plan.groups[0].members = [PlannedFile(str(sneaky), file_sha256(outsider), 0)]
    report = actions.apply_plan(plan, "delete")
    assert [(o.status, o.reason) for o in report.outcomes] == [("skipped", "outside the roots")]
    assert outsider.exists()


def test_move_never_follows_a_link_out_of_the_destination(tree, tmp_path):
    (tmp_path / "dups").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "dups" / "a").symlink_to(tmp_path / "elsewhere")
    plan = make_plan(tree, GROUPS, tmp_path)
    for dry_run in (True, False):
        report = actions.apply_plan(plan, "move", to=str(tmp_path / "dups"), dry_run=dry_run)
        assert {o.status for o in report.outcomes} == {"skipped"}
        assert all("through a link" in o.reason for o in report.outcomes)
    assert not list((tmp_path / "elsewhere").iterdir())
    assert (tree / "a" / "copy.txt").exists()


def test_the_trash_is_never_a_link(tree, tmp_path):
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / ".plan.trash").symlink_to(tmp_path / "elsewhere")
    plan = make_plan(tree, GROUPS, tmp_path)
    before = snapshot(tmp_path)
    with pytest.raises(UsageError, match="is a link or not a folder"):
        actions.apply_plan(plan, "delete")
    assert snapshot(tmp_path) == before
    (tmp_path / ".plan.trash").unlink()
    (tmp_path / ".plan.trash").mkdir()
    (tmp_path / ".plan.trash" / "a").symlink_to(tmp_path / "elsewhere")  # a folder inside it
    report = actions.apply_plan(plan, "delete")
    assert {o.status for o in report.outcomes} == {"skipped"}
    assert not list((tmp_path / "elsewhere").iterdir())


def _journal_lines(journal: Path) -> list[dict]:
    return [json.loads(line) for line in journal.read_text().splitlines()]


def _write_lines(journal: Path, entries: list[dict]) -> None:
    journal.write_text("".join(json.dumps(e) + "\n" for e in entries))


def _forged_entry(tree, outsider, seq=99):
    """The issue's attack: "restore" a file of the roots to a place outside them."""
    victim = tree / "other.txt"
    return {
        "op": "do", "seq": seq, "action": "move", "path": str(outsider.parent / "planted.sh"),
        "dest": str(victim), "dest_root": str(tree), "sha256": file_sha256(victim),
        "keeper": str(tree / "keep.txt"),
    }  # fmt: skip


def _crafted_whole(entries, tree, outsider):
    return [{"op": "begin", "format": "bienc-dedup-journal", "action": "move"},
            _forged_entry(tree, outsider)]  # fmt: skip


def _appended(entries, tree, outsider):
    return entries + [_forged_entry(tree, outsider) | {"run": entries[0]["run"]}]


def _with_a_copied_mac(entries, tree, outsider):
    do = next(e for e in entries if e["op"] == "do")
    return entries + [_forged_entry(tree, outsider) | {"run": do["run"], "mac": do["mac"]}]


def _path_changed(entries, tree, outsider):
    do = next(e for e in entries if e["op"] == "do")
    do["path"] = str(outsider.parent / "planted.sh")
    return entries


def _roots_widened(entries, tree, outsider):
    entries[0]["resolved_roots"] = entries[0]["roots"] = ["/"]
    return entries


@pytest.mark.parametrize(
    "craft", [_crafted_whole, _appended, _with_a_copied_mac, _path_changed, _roots_widened]
)
def test_a_crafted_journal_is_refused(tree, tmp_path, outsider, craft):
    report = actions.apply_plan(make_plan(tree, GROUPS, tmp_path), "delete")
    journal = Path(report.journal)
    _write_lines(journal, craft(_journal_lines(journal), tree, outsider))
    before = snapshot(tmp_path)
    result = bienc("dedup", "--undo", journal)
    assert result.exit_code == ExitStatus.USAGE, result.output
    assert "undo refused, nothing was restored" in result.stderr
    assert snapshot(tmp_path) == before
    assert not (outsider.parent / "planted.sh").exists()


def test_undo_never_restores_outside_the_roots(tree, tmp_path):
    """A folder of the roots became a link since the apply: nothing is put back through it."""
    report = actions.apply_plan(make_plan(tree, GROUPS, tmp_path), "delete")
    _swap_for_link(tree / "a", tmp_path / "elsewhere")
    before = snapshot(tmp_path)
    result = undo(Path(report.journal))
    assert {o.status for o in result.outcomes} == {"skipped"}
    assert all("outside the roots" in o.reason for o in result.outcomes)
    assert snapshot(tmp_path) == before


def test_undo_takes_files_only_from_its_own_trash(tree, tmp_path):
    """A trash folder replaced by a link to elsewhere: those files are not "restored"."""
    report = actions.apply_plan(make_plan(tree, GROUPS, tmp_path), "delete")
    _swap_for_link(tmp_path / ".plan.trash" / "a" / "deep", tmp_path / "elsewhere")
    result = undo(Path(report.journal))
    assert [(Path(o.path).name, o.status) for o in result.outcomes] == [
        ("reworded.txt", "skipped"),
        ("copy.txt", "done"),
    ]
    assert "through a link" in result.outcomes[0].reason
    assert (tmp_path / "elsewhere" / "reworded.txt").exists()
    assert not (tree / "a" / "deep" / "reworded.txt").exists()


def test_plan_never_overwrites_a_file_that_is_not_a_plan(dup_tree, fake_encoder, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    result = bienc("dedup", dup_tree, "--plan", notes)
    assert result.exit_code == ExitStatus.USAGE and "is not a bienc plan" in result.stderr
    assert notes.read_text() == "my notes\n"
    plan, first = _cli_plan(dup_tree, tmp_path)
    _, second = _cli_plan(dup_tree, tmp_path)  # a plan is replaced by a new one
    assert first["plan_id"] != second["plan_id"]


def test_undo_removes_only_the_folders_the_apply_made(tree, tmp_path):
    (tmp_path / "dups" / "a").mkdir(parents=True)  # the user's, empty, before the apply
    report = actions.apply_plan(
        make_plan(tree, GROUPS, tmp_path), "move", to=str(tmp_path / "dups")
    )
    assert (tmp_path / "dups" / "a" / "deep" / "reworded.txt").exists()
    undo(Path(report.journal))
    assert snapshot(tmp_path / "dups") == {"a": ("dir", b"")}  # deep/ went, a/ stays


def test_a_move_across_file_systems_copies_checks_and_undoes(tree, tmp_path, monkeypatch):
    before = snapshot(tree)
    real_link = os.link

    def cross_device(src, dst, **kwargs):
        if ".bienc-partial-" not in str(src):  # the copy is linked into place on its own side
            raise OSError(18, "Invalid cross-device link")
        return real_link(src, dst, **kwargs)

    monkeypatch.setattr(os, "link", cross_device)
    report = actions.apply_plan(make_plan(tree, GROUPS, tmp_path), "move", to=str(tmp_path / "d"))
    assert {o.status for o in report.outcomes} == {"done"}
    moved = snapshot(tmp_path / "d")
    assert moved["a/copy.txt"] == ("file", b"the original text\n")
    assert not any(".bienc-partial" in name for name in moved)
    undo(Path(report.journal))
    assert snapshot(tree) == before and not snapshot(tmp_path / "d")


def test_a_journal_option_naming_another_file_is_refused(tree, tmp_path):
    notes = tmp_path / "notes.jsonl"
    notes.write_text('{"my": "data"}\n')
    plan = make_plan(tree, GROUPS, tmp_path)
    before = snapshot(tmp_path)
    with pytest.raises(UsageError, match="not a bienc dedup journal"):
        actions.apply_plan(plan, "delete", journal=notes)
    assert snapshot(tmp_path) == before  # nothing moved, nothing appended to notes.jsonl


@pytest.mark.parametrize("action", ["move", "delete", "symlink"])
@pytest.mark.parametrize("hard_links", [True, False])
def test_a_name_taken_after_it_was_chosen_is_never_replaced(
    tree, tmp_path, monkeypatch, action, hard_links
):
    # free_name looks, then the move happens: a file planted at that name in between (by
    # another program) must survive, and the duplicate stays where it was.
    from bienc_cli.actions import apply as apply_module

    real_free_name = apply_module.free_name
    planted = []

    def free_name_then_taken(path):
        name = real_free_name(path)
        name.parent.mkdir(parents=True, exist_ok=True)
        name.write_bytes(b"planted meanwhile\n")
        planted.append(name)
        return name

    monkeypatch.setattr(apply_module, "free_name", free_name_then_taken)
    if not hard_links:  # a file system without hard links: the name is checked again

        def no_hard_links(src, dst, **kwargs):
            raise OSError(1, "Operation not permitted")

        monkeypatch.setattr(os, "link", no_hard_links)
    before = snapshot(tree)
    to = str(tmp_path / "d") if action == "move" else None
    if action == "move":
        monkeypatch.setattr(apply_module, "free_name", real_free_name)
        (tmp_path / "d" / "a").mkdir(parents=True)
        real_move = apply_module.move_file

        def move_after_a_plant(src, dest):
            dest.write_bytes(b"planted meanwhile\n")
            planted.append(dest)
            return real_move(src, dest)

        monkeypatch.setattr(apply_module, "move_file", move_after_a_plant)
    report = actions.apply_plan(make_plan(tree, GROUPS, tmp_path), action, to=to)
    assert {o.status for o in report.outcomes} == {"failed"}
    assert planted and all(p.read_bytes() == b"planted meanwhile\n" for p in planted)
    assert snapshot(tree) == before


def test_a_cross_device_move_never_removes_a_file_at_its_temporary_name(
    tree, tmp_path, monkeypatch
):
    # The partial copy's name is bienc's own (random); should a file be there anyway, the
    # exclusive create fails and that file is left alone, not cleaned up as a partial copy.
    from bienc_cli.actions import fs

    class Fixed:
        hex = "0" * 32

    monkeypatch.setattr(fs.uuid, "uuid4", lambda: Fixed())
    real_link = os.link

    def cross_device(src, dst, **kwargs):
        if ".bienc-partial-" not in str(src):
            raise OSError(18, "Invalid cross-device link")
        return real_link(src, dst, **kwargs)

    monkeypatch.setattr(os, "link", cross_device)
    dest = tmp_path / "d" / "a"
    dest.mkdir(parents=True)
    stranger = dest / ".copy.txt.bienc-partial-00000000"
    stranger.write_text("not bienc's\n")
    before = snapshot(tree)
    report = actions.apply_plan(make_plan(tree, GROUPS, tmp_path), "move", to=str(tmp_path / "d"))
    assert "failed" in {o.status for o in report.outcomes}
    assert stranger.read_text() == "not bienc's\n"
    assert snapshot(tree)["a/copy.txt"] == before["a/copy.txt"]
