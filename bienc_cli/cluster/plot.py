"""`bienc cluster --plot`: a 2D map of the documents, coloured by cluster, labelled by keywords.

The map is a projection of the document vectors to two dimensions:

- up to ``TSNE_MAX`` documents, t-SNE on cosine distances (initialised from PCA, seeded), which
  keeps neighbours together so clusters show as islands;
- beyond, PCA: t-SNE's cost grows too fast, and PCA's layout is at least faithful to the
  largest directions of variation (clusters may overlap on it).

Each cluster's label sits at its members' median position; the legend gives every label in
full with its size. ``.png`` (or ``.svg``, ``.pdf``) files are drawn by matplotlib with the Agg
backend; ``.html`` files are a self-contained page with an inline SVG (hover a point for its
document, click a legend entry to hide a cluster), with no network assets.

matplotlib and scikit-learn are imported inside the functions: `bienc --help` must not pay.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bienc_cli.errors import StorageError, UsageError
from bienc_cli.util.text import shorten

if TYPE_CHECKING:
    import numpy as np

    from bienc_cli.cluster.corpus import ClusterReport

TSNE_MAX = 3_000  # t-SNE up to this many documents, PCA beyond
POINT_NAMES_MAX = 80  # maps of at most this many documents name every point
HTML_MAX_POINTS = 20_000  # an HTML map draws at most this many documents (a seeded sample)
IMAGE_SUFFIXES = (".png", ".svg", ".pdf")
PLOT_SUFFIXES = (*IMAGE_SUFFIXES, ".html")
OUTLIER_COLOUR = "#b0b0b0"


@dataclass
class MapData:
    """Everything a map needs, in plain arrays and strings."""

    coords: np.ndarray  # (n, 2)
    labels: np.ndarray  # cluster id per document, -1: outlier
    names: dict[int, str]  # cluster id -> label
    hover: list[str]  # one line per document (its path and title)
    short: list[str]  # a few characters per document: its file name or row id
    title: str
    subtitle: str


def check_plot_path(path: str | Path) -> None:
    """Refuse a --plot file whose type we cannot draw, before any work is done."""
    if Path(path).suffix.lower() not in PLOT_SUFFIXES:
        raise UsageError(f"--plot {path}: use a file ending in {', '.join(PLOT_SUFFIXES)}")


def project(vectors: np.ndarray, *, seed: int = 0) -> tuple[np.ndarray, str]:
    """2D coordinates of the vectors, and the name of the projection used."""
    import numpy as np

    n = len(vectors)
    if n == 0:
        return np.zeros((0, 2)), "none"
    if n < 4:  # t-SNE needs perplexity < n, PCA needs two rows of variance
        return np.column_stack([np.arange(n, dtype=float), np.zeros(n)]), "none (too few)"
    if n <= TSNE_MAX:
        from sklearn.manifold import TSNE

        from bienc_cli.cluster.algorithms import single_thread

        tsne = TSNE(
            n_components=2,
            metric="cosine",
            init="pca",
            perplexity=min(30.0, max(5.0, n / 5), (n - 1) / 3),
            learning_rate="auto",
            random_state=seed,
        )
        with single_thread():
            return tsne.fit_transform(vectors), "t-SNE (cosine)"
    from sklearn.decomposition import PCA

    return PCA(n_components=2, random_state=seed).fit_transform(vectors), "PCA"


def colours(cluster_ids: Sequence[int]) -> dict[int, str]:
    """A distinct hex colour per cluster id: tab10 / tab20, then evenly spaced hues."""
    import matplotlib

    ids = sorted(c for c in cluster_ids if c != -1)
    if len(ids) <= 10:
        palette = [matplotlib.colors.to_hex(c) for c in matplotlib.colormaps["tab10"].colors]
    elif len(ids) <= 20:
        # tab20 comes in (dark, light) pairs: all the dark ones first, the pale ones last.
        pairs = [matplotlib.colors.to_hex(c) for c in matplotlib.colormaps["tab20"].colors]
        palette = pairs[0::2] + pairs[1::2]
    else:
        cmap = matplotlib.colormaps["turbo"]
        palette = [
            matplotlib.colors.to_hex(cmap(0.05 + 0.9 * i / len(ids))) for i in range(len(ids))
        ]
    return {c: palette[i % len(palette)] for i, c in enumerate(ids)} | {-1: OUTLIER_COLOUR}


def centres(coords: np.ndarray, labels: np.ndarray) -> dict[int, tuple[float, float]]:
    """Each cluster's median position: robust to a few members far from the rest."""
    import numpy as np

    out = {}
    for cluster in sorted(set(labels.tolist()) - {-1}):
        members = coords[labels == cluster]
        out[cluster] = (float(np.median(members[:, 0])), float(np.median(members[:, 1])))
    return out


def map_data(report: ClusterReport, *, seed: int = 0) -> MapData:
    """Project a cluster report's vectors and gather its labels, sizes and titles."""
    from bienc_cli.ui import cluster as ui_cluster
    from bienc_cli.ui import output as ui

    coords, projection = project(report.vectors, seed=seed)
    c = report.clustering
    names = {cluster.id: cluster.label for cluster in c.clusters}
    hover = [
        f"{ui_cluster.doc_location(d.path, d.row_id)} | {d.title}"
        if d.title
        else ui_cluster.doc_location(d.path, d.row_id)
        for d in report.documents
    ]
    short = [d.row_id if d.row_id is not None else Path(d.path).stem for d in report.documents]
    sources = ", ".join(ui.display_path(s) for s in report.sources[:3]) or "the index"
    if len(report.sources) > 3:
        sources += f" and {len(report.sources) - 3} more"
    outliers = f", {c.n_outliers} outliers" if c.n_outliers else ""
    title = f"{len(report.documents)} documents from {sources}: {c.n_clusters} clusters{outliers}"
    subtitle = f"bienc cluster: {ui_cluster.cluster_method(report)}; {report.model} vectors; map: {projection}"
    return MapData(coords, c.labels, names, hover, short, title, subtitle)


def write_map(report: ClusterReport, paths: Sequence[str | Path], *, seed: int = 0) -> None:
    """Draw the map of a cluster report into each path (.png, .svg, .pdf or .html)."""
    if not paths:
        return
    data = map_data(report, seed=seed)
    for path in paths:
        try:
            if Path(path).suffix.lower() == ".html":
                Path(path).write_text(html_map(data, seed=seed), encoding="utf-8")
            else:
                draw_image(data, path)
        except OSError as exc:
            raise StorageError(f"cannot write --plot {path}: {exc.strerror or exc}") from exc


def draw_image(data: MapData, path: str | Path) -> None:
    """A static map with matplotlib (Agg backend: no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    palette = colours(list(data.names))
    n = len(data.coords)
    point_size = float(np.clip(6000 / max(n, 1), 5, 80))
    fig, ax = plt.subplots(figsize=(13, 8.5), dpi=110, layout="constrained")
    try:
        outliers = data.labels == -1
        if outliers.any():
            ax.scatter(
                *data.coords[outliers].T, s=point_size * 0.6, c=OUTLIER_COLOUR, alpha=0.5,
                linewidths=0, label=f"outliers ({int(outliers.sum())})",
            )  # fmt: skip
        sizes = {c: int(np.sum(data.labels == c)) for c in data.names if c != -1}
        for cluster in sorted(sizes):
            members = data.labels == cluster
            ax.scatter(
                *data.coords[members].T, s=point_size, c=palette[cluster], alpha=0.75,
                linewidths=0.3, edgecolors="white",
                label=_wrap(f"{cluster}: {data.names[cluster]} ({sizes[cluster]})", 42),
            )  # fmt: skip
        if n <= POINT_NAMES_MAX:  # a small folder: name every document
            for (x, y), name in zip(data.coords, data.short):
                ax.annotate(
                    shorten(name, 24), (x, y), xytext=(0, -9), textcoords="offset points",
                    ha="center", va="top", fontsize=7, color="#555555",
                )  # fmt: skip
        texts = []
        for cluster, (x, y) in centres(data.coords, data.labels).items():
            texts.append(
                ax.text(
                    x, y, f"{cluster}: {_short(data.names[cluster])}", ha="center",
                    va="center", fontsize=10, fontweight="bold", color="#202020",
                    bbox={"boxstyle": "round,pad=0.25", "fc": "white", "ec": palette[cluster],
                          "lw": 1.5, "alpha": 0.85},
                )
            )  # fmt: skip
        ax.set_title(data.title, fontsize=14, loc="left")
        fig.text(0.01, 0.005, data.subtitle, fontsize=9, color="#606060", ha="left", va="bottom")
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
        if len(sizes) <= 30:
            ax.legend(
                loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9, frameon=False,
                markerscale=max(1.0, 40 / point_size) ** 0.5, title="cluster: keywords (size)",
            )  # fmt: skip
        _place_labels(fig, ax, texts, data.coords, point_size, named=n <= POINT_NAMES_MAX)
        fig.savefig(path)
    finally:
        plt.close(fig)


def _place_labels(fig, ax, texts, coords, point_size: float, *, named: bool) -> None:
    """Move each cluster label near its centre to where it hides the fewest points.

    Tries spots around the centre (above, below, beside, a label height or two away) and
    keeps the one that stays inside the plot, overlaps no label placed before it and covers
    the fewest points (and point names, when drawn); ties go to the spot nearest the centre.
    """
    import numpy as np

    if not texts:
        return
    renderer = fig.canvas.get_renderer()
    points = ax.transData.transform(coords)
    if named:  # each name sits about 14 px below its point
        points = np.concatenate([points, points - [0, 14 * fig.dpi / 100]])
    radius = np.sqrt(point_size) / 2 * fig.dpi / 72  # marker radius in pixels
    frame = ax.get_window_extent(renderer)
    placed: list = []
    for text in texts:
        box = text.get_window_extent(renderer)
        width, height = box.width + 2 * radius, box.height + 2 * radius
        cx, cy = ax.transData.transform(text.get_position())
        best = None
        for dy in (0, 1, -1, 2, -2, 3, -3):
            for dx in (0, -0.6, 0.6):
                x, y = cx + dx * box.width, cy + dy * box.height * 1.2
                inside = (np.abs(points[:, 0] - x) < width / 2) & (
                    np.abs(points[:, 1] - y) < height / 2
                )
                clash = any(
                    abs(x - px) < (width + pw) / 2 and abs(y - py) < (height + ph) / 2
                    for px, py, pw, ph in placed
                )
                outside = not (
                    frame.x0 <= x - box.width / 2
                    and x + box.width / 2 <= frame.x1
                    and frame.y0 <= y - box.height / 2
                    and y + box.height / 2 <= frame.y1
                )
                cost = (outside, clash, int(inside.sum()), abs(dx) + abs(dy))
                if best is None or cost < best[0]:
                    best = (cost, x, y)
        _, x, y = best
        text.set_position(ax.transData.inverted().transform((x, y)))
        placed.append((x, y, width, height))


def _short(label: str, words: int = 2) -> str:
    """The first keywords of a label, for on-map text."""
    return ", ".join(label.split(", ")[:words])


def _wrap(text: str, width: int) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width)) or text


def html_map(data: MapData, *, width: int = 1000, height: int = 700, seed: int = 0) -> str:
    """A self-contained HTML page: inline SVG points with tooltips, labels and a legend.

    Past ``HTML_MAX_POINTS`` documents a seeded sample is drawn (browsers slow down on
    hundreds of thousands of SVG elements); labels, sizes and the legend count them all.
    """
    import numpy as np

    palette = colours(list(data.names))
    coords = np.asarray(data.coords, dtype=float)
    sizes = {c: int(np.sum(data.labels == c)) for c in data.names}
    label_at = centres(coords, data.labels)
    subtitle = data.subtitle
    drawn = np.arange(len(coords))
    if len(coords) > HTML_MAX_POINTS:
        rng = np.random.default_rng(seed)
        drawn = np.sort(rng.choice(len(coords), HTML_MAX_POINTS, replace=False))
        subtitle += f"; {HTML_MAX_POINTS:,} of {len(coords):,} documents drawn"
    margin = 30
    low, span = np.zeros(2), np.ones(2)
    if len(coords):
        low, span = coords.min(axis=0), np.ptp(coords, axis=0)
        span = np.where(span > 0, span, 1.0)

    def to_svg(points: np.ndarray) -> np.ndarray:
        xy = margin + (points - low) / span * [width - 2 * margin, height - 2 * margin]
        xy[:, 1] = height - xy[:, 1]  # SVG's y axis points down
        return xy

    radius = 2.5 if len(drawn) > 2000 else 4
    points = []
    labels_drawn = data.labels[drawn].tolist()
    for (x, y), cluster, i in zip(to_svg(coords[drawn]), labels_drawn, drawn.tolist()):
        hover = data.hover[i]
        name = data.names.get(cluster, "")
        tip = html.escape(f"{hover}\ncluster {cluster}: {name}")
        points.append(
            f'<circle class="c{cluster}" cx="{x:.1f}" cy="{y:.1f}" r="{radius}" '
            f'fill="{palette.get(cluster, OUTLIER_COLOUR)}"><title>{tip}</title></circle>'
        )
    labels = []
    for cluster, centre in label_at.items():
        cx, cy = to_svg(np.array([centre]))[0]
        text = html.escape(f"{cluster}: {_short(data.names[cluster])}")
        labels.append(f'<text class="c{cluster} label" x="{cx:.1f}" y="{cy:.1f}">{text}</text>')
    legend = "".join(
        f'<li data-c="{c}"><span style="background:{palette.get(c, OUTLIER_COLOUR)}"></span>'
        f"{c}: {html.escape(data.names[c])} ({sizes[c]})</li>"
        for c in sorted(data.names, key=lambda c: (c == -1, c))
    )
    return _PAGE.format(
        title=html.escape(data.title),
        subtitle=html.escape(subtitle),
        width=width,
        height=height,
        points="\n".join(points),
        labels="\n".join(labels),
        legend=legend,
    )


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font: 14px system-ui, sans-serif; margin: 1em; color: #222; }}
h1 {{ font-size: 1.2em; margin: 0; }} p {{ color: #666; margin: .2em 0 .8em; }}
.wrap {{ display: flex; gap: 1em; align-items: flex-start; }}
svg {{ border: 1px solid #ddd; max-width: 100%; height: auto; }}
circle {{ opacity: .75; }} circle:hover {{ opacity: 1; stroke: #000; }}
text.label {{ font-weight: bold; font-size: 13px; text-anchor: middle; paint-order: stroke;
  stroke-width: 4px; stroke: #fff; fill: #222; pointer-events: none; }}
ul {{ list-style: none; padding: 0; margin: 0; }}
li {{ cursor: pointer; margin: .2em 0; }} li.off {{ opacity: .35; }}
li span {{ display: inline-block; width: .9em; height: .9em; margin-right: .4em; border-radius: 50%; }}
.hidden {{ display: none; }}
</style></head><body>
<h1>{title}</h1><p>{subtitle}. Hover a point for its document; click a cluster to hide it.</p>
<div class="wrap">
<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">
{points}
{labels}
</svg>
<ul>{legend}</ul>
</div>
<script>
for (const item of document.querySelectorAll("li[data-c]")) {{
  item.addEventListener("click", () => {{
    item.classList.toggle("off");
    for (const el of document.querySelectorAll(".c" + item.dataset.c)) el.classList.toggle("hidden");
  }});
}}
</script>
</body></html>
"""
