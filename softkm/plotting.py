"""Plots of a comparison: convergence curves, and the clusters of every row as a scatter.

matplotlib is an optional dependency (``pip install 'softkm[plot]'``) and is imported
only when a plot is checked or drawn. The figure is drawn on matplotlib's Agg canvas
without pyplot, so plotting needs no display and changes no global matplotlib state.
"""

from __future__ import annotations

import math
import os

import numpy as np

from softkm.comparison import Comparison, convergence_curves, scatter_view
from softkm.errors import OptionError, OutputError
from softkm.tables import atomic_output, check_output_path

PLOT_FORMATS = {".png": "png", ".svg": "svg"}

# Maximum number of data rows drawn in each scatter. Larger data is sampled down to this many.
MAX_SCATTER_POINTS = 20_000

# Scatter panels per line of the figure.
SCATTER_COLUMNS = 3

# A fixed salt makes the element ids of an SVG, and so its bytes, the same on every run.
SVG_HASH_SALT = "softkm"

# Runs of at most this many iterations get markers, and a longer run puts the
# iteration axis on a log scale, so that hard mode's few iterations stay visible.
SHORT_RUN_ITERATIONS = 20

# Line style of each mode in the convergence panels. The colour distinguishes the rows.
MODE_LINE_STYLES = {"hard": "-", "soft": "--", "gumbel": ":"}


def check_plot_output(path: str, *, force: bool, input_path: str | None = None) -> str:
    """Check the plot's path and that matplotlib is installed, and return 'png' or 'svg'.

    Called before any fitting, so that a plot that cannot be written fails at once.
    Raises ``OptionError`` for an unsupported extension or a missing matplotlib, and
    ``OutputError`` for a path that must not be written.
    """
    extension = os.path.splitext(path)[1].lower()
    if extension not in PLOT_FORMATS:
        raise OptionError(f"plot file '{path}' has an unsupported extension; use .png or .svg")
    _import_matplotlib()
    check_output_path(path, force=force, input_path=input_path)
    return PLOT_FORMATS[extension]


def write_comparison_plot(comparison: Comparison, path: str, *, force: bool = False,
                          input_path: str | None = None) -> None:
    """Draw the comparison and write it to ``path`` (.png or .svg) through ``atomic_output``."""
    plot_format = check_plot_output(path, force=force, input_path=input_path)
    matplotlib = _import_matplotlib()
    with matplotlib.rc_context({"svg.hashsalt": SVG_HASH_SALT}):
        figure = draw_comparison(comparison)
        # The date would make every SVG differ. PNG metadata contains no date by default.
        metadata = {"Date": None} if plot_format == "svg" else None
        with atomic_output(path, force=force, input_path=input_path) as temporary:
            try:
                figure.savefig(temporary, format=plot_format, dpi=110, metadata=metadata)
            except OSError as error:
                raise OutputError(f"cannot write plot '{path}': {error.strerror or error}") from None


def draw_comparison(comparison: Comparison):
    """Return a matplotlib ``Figure``: convergence curves on top, one scatter per row below."""
    matplotlib = _import_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n_panels = len(comparison.rows)
    n_columns = min(n_panels, SCATTER_COLUMNS)
    n_lines = math.ceil(n_panels / n_columns)
    figure = Figure(figsize=(max(11.0, 4.4 * n_columns), 4.2 + 4.2 * n_lines), layout="constrained")
    FigureCanvasAgg(figure)
    top, bottom = figure.subfigures(2, 1, height_ratios=[1.0, n_lines])

    _draw_convergence(top, comparison, matplotlib)
    _draw_scatter(bottom, comparison, matplotlib, n_lines, n_columns)
    return figure


def _draw_convergence(subfigure, comparison: Comparison, matplotlib) -> None:
    """Draw the objective and the hard inertia per iteration, one line per row."""
    objective_axes, inertia_axes = subfigure.subplots(1, 2)
    units = "z-scored squared distance" if comparison.parameters.get("standardize") else "squared distance"
    row_colors = matplotlib.colormaps["tab10"](np.arange(len(comparison.rows)) % 10)
    longest = 1
    for row, color in zip(comparison.rows, row_colors):
        iterations, objective, inertia = convergence_curves(row)
        # Markers keep a run of a few iterations visible next to runs of hundreds.
        marker = "o" if len(iterations) <= SHORT_RUN_ITERATIONS else None
        style = dict(color=color, linestyle=MODE_LINE_STYLES.get(row.mode, "-"), linewidth=1.6, marker=marker,
                     markersize=4, label=row.name)
        objective_axes.plot(iterations, objective, **style)
        inertia_axes.plot(iterations, inertia, **style)
        longest = max(longest, len(iterations))

    objective_axes.set_ylabel(f"objective\n({units} per unit weight)")
    inertia_axes.set_ylabel(f"hard inertia\n({units} per unit weight)")
    for axes in (objective_axes, inertia_axes):
        axes.set_xlabel("iteration")
        if longest > SHORT_RUN_ITERATIONS:
            axes.set_xscale("log")
        axes.grid(True, alpha=0.3)
        _use_log_scale_for_wide_ranges(axes)
    objective_axes.legend(title="mode", fontsize="small")
    subfigure.suptitle("Convergence of the best restart of each fit")


def _draw_scatter(subfigure, comparison: Comparison, matplotlib, n_lines: int, n_columns: int) -> None:
    """Draw one panel per row: the points coloured by cluster and the centroids as crosses."""
    view = scatter_view(comparison, MAX_SCATTER_POINTS)
    axes_grid = subfigure.subplots(n_lines, n_columns, squeeze=False)
    marker_size = float(np.clip(20_000 / len(view.points), 1.0, 16.0))
    x_label, y_label = _axis_labels(view, bool(comparison.parameters.get("standardize")))

    for index, axes in enumerate(axes_grid.flat):
        if index >= len(comparison.rows):
            axes.set_axis_off()
            continue
        row = comparison.rows[index]
        colors = _cluster_colors(row.result.n_clusters, matplotlib)
        labels = row.result.labels[view.point_index]
        # Larger clusters are drawn first, so that a small cluster is not hidden under them.
        sizes = np.bincount(labels, minlength=row.result.n_clusters)
        order = np.argsort(-sizes[labels], kind="stable")
        axes.scatter(view.points[order, 0], view.points[order, 1], c=colors[labels[order]], s=marker_size,
                     linewidths=0, alpha=0.75, rasterized=True)
        centroids = view.centroids[index]
        axes.scatter(centroids[:, 0], centroids[:, 1], c=colors, marker="X", s=140,
                     edgecolors="black", linewidths=1.2, zorder=3)
        axes.set_title(_panel_title(comparison, index), fontsize="medium")
        axes.set_xlabel(x_label)
        axes.set_ylabel(y_label)

    sampled = len(view.point_index) < comparison.X.shape[0]
    note = f", {len(view.point_index)} sampled points" if sampled else ""
    subfigure.suptitle(f"Clusters of each fit (one colour per cluster, X marks a centroid{note})")


def _panel_title(comparison: Comparison, index: int) -> str:
    row = comparison.rows[index]
    record = row.record(comparison.columns)
    title = f"{row.name}: inertia {record['inertia']:.5g}"
    if "ari" in record:
        title += f", ARI {record['ari']:.3f}"
    return title


def _axis_labels(view, standardize: bool) -> tuple[str, str]:
    """Return the axis labels: feature names, or principal components with their share of variance."""
    if view.explained is None:
        return tuple(f"{name} (input units)" if name else "" for name in view.axis_names)
    units = "z-scores" if standardize else "input units"
    return tuple(
        f"{name}, {units} ({share:.0%} of variance)" for name, share in zip(view.axis_names, view.explained)
    )


def _cluster_colors(n_clusters: int, matplotlib) -> np.ndarray:
    """Return one RGBA colour (n_clusters, 4) per cluster, distinct for up to 20 clusters."""
    if n_clusters <= 10:
        return matplotlib.colormaps["tab10"](np.arange(n_clusters))
    if n_clusters <= 20:
        # tab20 pairs a dark and a light shade of each hue: all dark shades first, so
        # that neighbouring cluster numbers get different hues.
        order = np.concatenate([np.arange(0, 20, 2), np.arange(1, 20, 2)])
        return matplotlib.colormaps["tab20"](order[:n_clusters])
    return matplotlib.colormaps["turbo"](np.linspace(0.0, 1.0, n_clusters))


def _use_log_scale_for_wide_ranges(axes) -> None:
    """Switch the y axis to a log scale when its positive values span more than a factor of 20."""
    values = np.concatenate([line.get_ydata() for line in axes.get_lines()] or [np.array([])])
    values = values[np.isfinite(values) & (values > 0)]
    if values.size and values.max() > 20 * values.min():
        axes.set_yscale("log")


def _import_matplotlib():
    """Return the matplotlib module, or raise ``OptionError`` with the install command."""
    try:
        import matplotlib
        import matplotlib.backends.backend_agg  # noqa: F401
        import matplotlib.figure  # noqa: F401
    except ImportError:
        raise OptionError("matplotlib is not installed; run pip install 'softkm[plot]'") from None
    return matplotlib
