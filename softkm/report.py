"""Rendering for the terminal: progress bars, summaries and warnings, all on stderr.

stdout carries data only, so everything here writes to stderr through rich, except the
output of ``softkm compare``, whose table is the command's data.
"""

from __future__ import annotations

import math
import sys
from contextlib import contextmanager

from rich.console import Console

_console = Console(stderr=True, highlight=False, soft_wrap=True)


@contextmanager
def progress(total: int, enabled: bool):
    """Yield an ``on_iteration(restart, record)`` callback driving a transient progress bar.

    The bar is shown only when stderr is a terminal and ``enabled``; otherwise the
    callback does nothing.
    """
    if not (enabled and sys.stderr.isatty()):
        yield None
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("restart {task.fields[restart]}"),
        BarColumn(),
        TextColumn("iteration {task.fields[iteration]}  objective {task.fields[objective]}"),
        TimeElapsedColumn(),
        console=_console,
        transient=True,
    ) as bar:
        task = bar.add_task("fit", total=total, restart=1, iteration=0, objective="-")
        state = {"done": 0, "restart": 0}

        def on_iteration(restart, record) -> None:
            if restart != state["restart"]:
                state["restart"] = restart
            state["done"] += 1
            bar.update(task, completed=state["done"], restart=restart + 1, iteration=record.iteration,
                       objective=f"{record.objective:.6g}")

        yield on_iteration


def warning(message: str) -> None:
    _console.print(f"softkm: warning: {message}", markup=False)


def print_fit_summary(job) -> None:
    """Print the warnings and a short summary of a fit on stderr."""
    for message in job.warnings:
        warning(message)
    result = job.result
    status = "converged" if result.converged else "not converged"
    if result.mode == "gumbel" or (result.mode == "soft" and result.parameters.get("batch_size") is not None):
        # The noise of the samples or mini-batches keeps the objective moving, so these
        # runs have no stopping test and always take max_iter steps.
        status = "fixed number of steps, no stopping test"
    lines = [
        f"softkm fit: mode {result.mode}, k={result.n_clusters}, {_count(result.n_samples, 'row')}"
        + (f" ({job.n_dropped} dropped)" if job.n_dropped else "")
        + f", {_count(result.n_features, 'feature')}, {result.dtype}",
        f"  iterations {result.n_iter} ({status}), restart {result.best_restart + 1} of {len(result.restart_scores)} kept",
        f"  inertia {result.inertia:.10g}" + ("  (z-scored units)" if result.preprocessing.standardize else ""),
    ]
    if result.mode != "hard":
        tau = result.parameters["tau"]
        lines.append(
            f"  soft objective {result.objective:.10g}, tau {tau:g} x scale s {result.scale:.6g} "
            f"= temperature {result.temperature:.6g}"
        )
    lines.append(f"  runtime {result.runtime:.3f} s")
    if job.output_closed:
        lines.append(OUTPUT_CLOSED_LINE)
    for line in lines:
        _console.print(line, markup=False)


# Summary line for a stream output whose reader stopped reading, as ``head`` does.
OUTPUT_CLOSED_LINE = "  the reader of the labels output closed it before every row was written"


def _count(number: int, noun: str) -> str:
    """Return "1 row" or "3 rows"."""
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def print_assign_summary(job) -> None:
    """Print a short summary of an assignment on stderr."""
    dropped = f" ({job.n_dropped} dropped)" if job.n_dropped else ""
    _console.print(
        f"softkm assign: {_count(job.n_rows, 'row')}{dropped} to {job.model.n_clusters} {job.model.mode} "
        f"cluster{'' if job.model.n_clusters == 1 else 's'}, "
        f"inertia {job.inertia:.10g}",
        markup=False,
    )
    if job.output_closed:
        _console.print(OUTPUT_CLOSED_LINE, markup=False)


# ---------------------------------------------------------------------------
# softkm compare. Unlike the summaries above, a comparison is the command's data, so
# these functions write it to stdout.

COMPARE_FORMATS = ("table", "json", "csv", "markdown")

# Headers of the human-readable formats (table and markdown) that differ from the column name.
_COMPARE_HEADERS = {"runtime": "runtime (s)", "mean_entropy": "mean_entropy (nats)"}

# Columns left out of the human-readable formats, which show the median runtime only.
_MACHINE_ONLY_COLUMNS = ("runtime_min", "runtime_max")

# Two-line headers keep the terminal table narrow.
_TABLE_HEADERS = {
    "runtime": "runtime\n(s)",
    "size_smallest": "size\nsmallest",
    "size_largest": "size\nlargest",
    "empty_clusters": "empty\nclusters",
    "ari_vs_hard": "ari vs\nhard",
    "mean_entropy": "mean\nentropy",
    "centroid_index": "centroid\nindex",
}

# Width of the table when stdout is not a terminal, wide enough that no cell is cut short.
_PIPED_TABLE_WIDTH = 200
_UNBOUNDED_WIDTH = 1_000_000


def print_comparison(comparison, output_format: str) -> None:
    """Write a comparison to stdout as a rich table, JSON, CSV or a Markdown table.

    Raises ``OutputClosed`` when the reader of stdout closed the pipe.
    """
    if output_format == "table":
        width = None if sys.stdout.isatty() else _PIPED_TABLE_WIDTH
        print_comparison_table(Console(file=sys.stdout, highlight=False, width=width), comparison)
        return
    renderers = {"json": comparison_json, "csv": comparison_csv, "markdown": comparison_markdown}
    _write_stdout_text(renderers[output_format](comparison))


def comparison_json(comparison) -> str:
    """Return ``{"parameters": {...}, "rows": [...]}`` as indented JSON, with null for missing values."""
    import json

    document = {"parameters": _json_safe(comparison.parameters), "rows": _json_safe(comparison.records())}
    return json.dumps(document, indent=2, allow_nan=False) + "\n"


def comparison_csv(comparison) -> str:
    """Return a header line and one line per row, with every digit of each float and empty missing values."""
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(comparison.columns)
    for record in comparison.records():
        writer.writerow([_csv_cell(value) for value in record.values()])
    return buffer.getvalue()


def comparison_markdown(comparison) -> str:
    """Return a pipe table with the median runtime, numbers right-aligned."""
    columns = _human_columns(comparison)
    lines = [
        "| " + " | ".join(_COMPARE_HEADERS.get(column, column) for column in columns) + " |",
        "|" + "|".join("---" if column == "mode" else "---:" for column in columns) + "|",
    ]
    for record in comparison.records():
        lines.append("| " + " | ".join(_human_cell(column, record[column]) for column in columns) + " |")
    return "\n".join(lines) + "\n"


def print_comparison_table(console: Console, comparison) -> None:
    """Print the comparison as a table on ``console``, one row per mode, or one row per
    measure when that table is wider than the console (an 80-column terminal, say), so
    that no value is cut short.
    """
    from rich.measure import Measurement

    def fits(table) -> bool:
        # Console.measure caps the width at the console's, so the table is measured unbounded.
        return Measurement.get(console, console.options.update(width=_UNBOUNDED_WIDTH), table).maximum <= console.width

    table = comparison_table(comparison)
    if fits(table):
        console.print(table)
        return
    # Transposed, and split into several tables of as many fits as the width allows.
    records = comparison.records()
    per_table = len(records)
    while per_table > 1 and not fits(comparison_table(comparison, transposed=True, records=records[:per_table])):
        per_table -= 1
    for start in range(0, len(records), per_table):
        console.print(comparison_table(comparison, transposed=True, records=records[start : start + per_table]))


def comparison_table(comparison, transposed: bool = False, records: list[dict] | None = None):
    """Return a rich ``Table`` of the comparison's ``records`` (all by default), with the
    median runtime.

    With ``transposed`` the rows are the measures and the columns the fits, headed by
    their mode and tau.
    """
    from rich import box
    from rich.table import Table

    parameters = comparison.parameters
    table = Table(
        box=box.SIMPLE_HEAD,
        title=f"softkm compare: k={parameters['n_clusters']}, {parameters['n_samples']} rows, "
        f"{parameters['n_features']} features, seed {parameters['seed']}",
        caption="inertia in squared z-scores" if parameters.get("standardize") else None,
    )
    columns = _human_columns(comparison)
    if records is None:
        records = comparison.records()
    if transposed:
        table.add_column("measure", justify="left", no_wrap=True)
        for record in records:
            tau = "" if record.get("tau") is None else " " + _human_cell("tau", record["tau"])
            table.add_column(_human_cell("mode", record["mode"]) + tau, justify="right")
        for column in columns[1:]:
            name = _TABLE_HEADERS.get(column, column).replace("\n", " ")
            table.add_row(name, *(_human_cell(column, record[column]) for record in records))
        return table
    for column in columns:
        table.add_column(_TABLE_HEADERS.get(column, column), justify="left" if column == "mode" else "right")
    for record in records:
        table.add_row(*(_human_cell(column, record[column]) for column in columns))
    return table


def _human_columns(comparison) -> list[str]:
    return [column for column in comparison.columns if column not in _MACHINE_ONLY_COLUMNS]


def _human_cell(column: str, value) -> str:
    """Format one value for the table and markdown formats, as an empty string when it is missing."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if column == "tau":
        return f"{value:g}"
    if column in ("inertia", "objective"):
        return f"{value:.7g}"
    if column == "runtime":
        return f"{value:.3g}"
    if column == "mean_entropy":
        # Significant digits, because nearly hard memberships have entropies far below 1e-4.
        return f"{value:.4g}"
    return f"{value:.4f}"


def _csv_cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ""
    return str(value)


def _json_safe(value):
    """Return ``value`` with non-finite floats replaced by None, so that the JSON stays valid."""
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _write_stdout_text(text: str) -> None:
    """Write ``text`` to stdout, turning a closed pipe into ``OutputClosed`` as ``write_table`` does."""
    from softkm.tables import OutputClosed, _redirect_stdout_to_devnull

    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        _redirect_stdout_to_devnull()
        raise OutputClosed() from None
