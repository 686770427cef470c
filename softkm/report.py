"""Rendering for the terminal: progress bars, summaries and warnings, all on stderr.

stdout carries data only, so everything here writes to stderr through rich.
"""

from __future__ import annotations

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
    features = job.features
    status = "converged" if result.converged else "not converged"
    lines = [
        f"softkm fit: mode {result.mode}, k={result.n_clusters}, {result.n_samples} rows"
        + (f" ({features.n_dropped} dropped)" if features.n_dropped else "")
        + f", {result.n_features} features, {result.dtype}",
        f"  iterations {result.n_iter} ({status}), restart {result.best_restart + 1} of {len(result.restart_inertias)} kept",
        f"  inertia {result.inertia:.10g}" + ("  (z-scored units)" if result.preprocessing.standardize else ""),
    ]
    if result.mode != "hard":
        tau = result.parameters["tau"]
        lines.append(
            f"  soft objective {result.objective:.10g}, tau {tau:g} x scale s {result.scale:.6g} "
            f"= temperature {result.temperature:.6g}"
        )
    lines.append(f"  runtime {result.runtime:.3f} s")
    for line in lines:
        _console.print(line, markup=False)


def print_assign_summary(model, features, inertia: float) -> None:
    """Print a short summary of an assignment on stderr."""
    dropped = f" ({features.n_dropped} dropped)" if features.n_dropped else ""
    _console.print(
        f"softkm assign: {features.X.shape[0]} rows{dropped} to {model.n_clusters} {model.mode} clusters, "
        f"inertia {inertia:.10g}",
        markup=False,
    )
