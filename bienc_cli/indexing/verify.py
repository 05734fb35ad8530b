"""`bienc verify`: check an index against its manifest and sidecar, and repair it.

Checks, in order: CURRENT names a generation; the manifest parses and has a known format;
every file's size and SHA-256 match the manifest; the graph loads with the manifest's
dimension; every sidecar label is unique; every chunk's graph item (its ``vector_label``) is
present in the graph and not deleted there, and every live graph item holds some chunk's
vector; the lookup holds the same labels; the counts agree;
the model can still be found. Repair goes back to the newest generation that verifies and
then brings it up to date from the sources (or rebuilds from the sources if none does).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bienc_cli.errors import BiencError, IndexNotFound
from bienc_cli.store import generations as store
from bienc_cli.store import layout, lock
from bienc_cli.store.graph import item_ids, live_labels
from bienc_cli.store.manifest import check_format


@dataclass
class Check:
    name: str
    ok: bool
    detail: str = ""


@dataclass
class Verification:
    index: str
    generation: str | None
    checks: list[Check] = field(default_factory=list)
    repaired: str | None = None  # what --repair did

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "generation": self.generation,
            "ok": self.ok,
            "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in self.checks],
            "repaired": self.repaired,
        }


def verify_index(root: Path, *, check_model: bool = True) -> Verification:
    """Check the live generation. Never raises for a damaged index: that is the finding."""
    if not root.is_dir():
        raise IndexNotFound(f"no bienc index at {root}")
    name = _current(root)
    result = Verification(index=str(root), generation=name)
    if name is None:
        result.checks.append(
            Check("current", False, f"{root}/{layout.CURRENT} is missing or empty")
        )
        return result
    result.checks.extend(verify_generation(root / name, check_model=check_model))
    if check_model and result.ok:
        export = export_check(root, _read_manifest(root / name))
        if export is not None:
            result.checks.append(export)
    return result


def _read_manifest(folder: Path) -> dict[str, Any]:
    return json.loads((folder / layout.MANIFEST).read_text(encoding="utf-8"))


def query_export(root: Path, manifest: dict[str, Any]) -> tuple[str, Path] | None:
    """The backend and folder of the ONNX export that queries of this index load, if they
    load one: where the manifest says queries (``backend``) or the encoder it was built
    with (``backend_choice``) are onnx or onnx-int8."""
    stored = manifest["model"]
    for backend in (stored.get("backend"), stored.get("backend_choice")):
        if backend in ("onnx", "onnx-int8"):
            return backend, layout.onnx_dir(root, stored["fingerprint"], backend)
    return None


def export_check(root: Path, manifest: dict[str, Any]) -> Check | None:
    """The ONNX export queries need: present, complete, loadable, of the index's dimension."""
    from bienc_cli.encoding.encoder import export_problem

    export = query_export(root, manifest)
    if export is None:
        return None
    backend, folder = export
    problem = export_problem(folder, int(manifest["model"]["dim"]))
    return Check(f"{backend} export", problem is None, problem or str(folder))


def verify_generation(folder: Path, *, check_model: bool = True) -> list[Check]:
    checks: list[Check] = []
    try:
        manifest = json.loads((folder / layout.MANIFEST).read_text(encoding="utf-8"))
        check_format(folder.parent, manifest)
    except (OSError, ValueError, BiencError) as exc:
        return [Check("manifest", False, str(exc))]
    checks.append(Check("manifest", True, f"format version {manifest['format_version']}"))
    files_ok = True
    for name, expected in manifest.get("files", {}).items():
        problem = _file_problem(folder / name, expected)
        files_ok &= problem is None
        checks.append(Check(f"file {name}", problem is None, problem or "size and sha256 match"))
    if not files_ok:
        return checks
    generation = store.Generation(root=folder.parent, dir=folder, manifest=manifest)
    checks.extend(_label_checks(generation))
    if check_model:
        checks.append(_model_check(manifest))
    return checks


def _file_problem(path: Path, expected: dict[str, Any]) -> str | None:
    try:
        size = path.stat().st_size
        if size != expected["bytes"]:
            return f"{size} bytes, manifest says {expected['bytes']}"
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    except OSError as exc:
        return exc.strerror or str(exc)
    if digest.hexdigest() != expected["sha256"]:
        return "sha256 does not match the manifest"
    return None


def _label_checks(generation: store.Generation) -> list[Check]:
    checks = []
    try:
        table = generation.read_sidecar(columns=["label", "vector_label", "doc_id"])
        graph = generation.load_hnsw()
    except BiencError as exc:
        return [Check("readable", False, str(exc))]
    sidecar_labels = table["label"].to_pylist()
    unique = set(sidecar_labels)
    checks.append(
        Check(
            "labels unique",
            len(unique) == len(sidecar_labels),
            f"{len(sidecar_labels) - len(unique)} duplicated"
            if len(unique) != len(sidecar_labels)
            else "",
        )
    )
    items = set(table["vector_label"].to_pylist())  # the graph items the chunks' vectors are
    graph_ids = set(item_ids(graph))
    missing = items - graph_ids
    checks.append(
        Check(
            "labels in graph",
            not missing,
            f"{len(missing)} sidecar vector labels not in the graph" if missing else "",
        )
    )
    counts = generation.manifest["counts"]
    live_in_graph = len(graph_ids) - counts["deleted"]
    checks.append(
        Check(
            "counts",
            live_in_graph == len(items) == generation.vector_count
            and len(unique) == counts["chunks"]
            and len(set(table["doc_id"].to_pylist())) == counts["documents"],
            f"graph {len(graph_ids)} items - {counts['deleted']} deleted, "
            f"sidecar {len(unique)} rows over {len(items)} vectors, manifest "
            f"{counts['chunks']} chunks / {generation.vector_count} vectors / "
            f"{counts['documents']} documents",
        )
    )
    live = set(live_labels(graph))
    deleted = len((items & graph_ids) - live)
    checks.append(
        Check(
            "no deleted label in sidecar",
            not deleted,
            f"{deleted} marked deleted" if deleted else "",
        )
    )
    unused = len(live - items)
    checks.append(
        Check(
            "graph items used",  # one live item per distinct vector, none left over
            not unused,
            f"{unused} live graph items hold no chunk's vector" if unused else "",
        )
    )
    pairs = set(zip(sidecar_labels, table["vector_label"].to_pylist()))
    try:
        lookup = {tuple(row) for row in generation.scan_lookup(("label", "vector_label"))}
    except BiencError as exc:
        checks.append(Check("lookup", False, str(exc)))
    else:
        checks.append(
            Check(
                "lookup",
                lookup == pairs,
                "" if lookup == pairs else "labels differ from the sidecar",
            )
        )
    return checks


def _model_check(manifest: dict[str, Any]) -> Check:
    from bienc_cli.encoding.model import describe_model, resolve_model

    stored = manifest["model"]
    try:
        if Path(stored["path"]).is_dir():
            model = describe_model(stored["name"], stored["path"])
        else:
            model = resolve_model(stored["name"])
    except BiencError as exc:
        return Check("model", False, str(exc))
    same = model.fingerprint == stored["fingerprint"] and model.dim == stored["dim"]
    detail = (
        f"{model.name} at {model.path}"
        if same
        else f"{model.path} differs from the model the index was built with"
    )
    return Check("model", same, detail)


def _current(root: Path) -> str | None:
    try:
        name = (root / layout.CURRENT).read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return name or None


def repair_index(root: Path, *, wait: float | None = None) -> Verification:
    """Make the index verify again: fall back to the newest good generation, then re-index.

    Returns the verification of the repaired index, with ``repaired`` saying what was done.
    """
    from bienc_cli.indexing.request import IndexRequest
    from bienc_cli.indexing.run import run_index

    before = verify_index(root, check_model=False)
    if before.ok:
        manifest = _read_manifest(root / str(before.generation))
        export = export_check(root, manifest)
        if export is None or export.ok:
            before.repaired = "nothing to repair"
            return before
        with lock.write_lock(root, wait=wait):
            _rebuild_export(root, manifest)
        after = verify_index(root)
        after.repaired = f"exported the model to ONNX again ({export.detail})"
        return after
    with lock.write_lock(root, wait=wait):
        good = [
            g
            for g in layout.generation_dirs(root)
            if all(c.ok for c in verify_generation(g, check_model=False))
        ]
        if good:
            store.publish(root, good[0].name)
    if good:
        report = run_index(IndexRequest(root=root, wait=wait))
        action = f"went back to {good[0].name}, then re-indexed the sources ({report.added} added, {report.updated} updated, {report.removed} removed)"
    else:
        manifest = _any_manifest(root)
        if manifest is None:
            raise IndexNotFound(
                f"nothing in {root} can be repaired: no generation has a readable manifest; index the sources again"
            )
        sources = manifest["sources"]
        options = {k: tuple(v) if isinstance(v, list) else v for k, v in sources["options"].items()}
        report = run_index(
            IndexRequest(
                root=root,
                sources=sources["roots"],
                model=manifest["model"]["path"],
                options=options,
                # the same encoder and settings as before, int8 included
                backend=manifest["model"].get("backend"),
                overlap=manifest["chunking"]["overlap"],
                ef=manifest["hnsw"]["ef"],
                rebuild=True,
                wait=wait,
            )
        )
        action = f"rebuilt from the sources ({report.documents} documents)"
    after = verify_index(root)
    after.repaired = action
    return after


def _rebuild_export(root: Path, manifest: dict[str, Any]) -> None:
    """Export the index's model again, into the folder its queries load."""
    import dataclasses

    from bienc_cli.encoding.encoder import rebuild_export
    from bienc_cli.indexing.model_choice import choose_model
    from bienc_cli.indexing.request import IndexRequest

    export = query_export(root, manifest)
    assert export is not None
    backend, folder = export
    model = choose_model(IndexRequest(root=root), manifest)
    rebuild_export(dataclasses.replace(model, backend=backend, onnx_dir=str(folder)))


def _any_manifest(root: Path) -> dict[str, Any] | None:
    for folder in layout.generation_dirs(root):
        try:
            return json.loads((folder / layout.MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
    return None
