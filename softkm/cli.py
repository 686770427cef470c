"""The ``softkm`` command line: Typer commands over ``softkm.workflow``.

Only Typer is imported at start-up; NumPy, pandas and pyarrow are imported inside the
commands, so ``softkm --help`` stays fast. A ``SoftkmError`` becomes one line
``softkm: error: ...`` on stderr and exit code 1. Usage errors (unknown options, invalid
option values) become one such line too, with exit code 2. Ctrl-C and SIGTERM exit with
130 and 143.
"""

from __future__ import annotations

import math
import os
import signal
import sys
import warnings
from contextlib import contextmanager
from enum import Enum
from typing import Annotated, Optional

import typer
import typer.core


def _exception_class(name: str) -> type:
    """Return Click's exception class ``name`` from the Click that Typer uses.

    Typer 0.29 ships its own copy of Click (``typer._click``) while older releases use the
    ``click`` package, so the class is looked up among the bases of ``typer.BadParameter``.
    """
    return next(base for base in typer.BadParameter.__mro__ if base.__name__ == name)


_UsageError = _exception_class("UsageError")
_ClickException = _exception_class("ClickException")


class _OneLineErrorGroup(typer.core.TyperGroup):
    """The command group, with usage errors printed as one ``softkm: error:`` line.

    Typer draws usage errors in a box over several lines. This group runs Typer in
    non-standalone mode, catches the usage error and prints its message on one line
    with a hint to ``--help``. The exit code stays 2.
    """

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            exit_code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except _ClickException as error:
            exit_code = _print_click_error(error)
        except typer.Abort:
            typer.echo("softkm: aborted", err=True)
            exit_code = 1
        if not isinstance(exit_code, int):
            exit_code = 0
        if standalone_mode:
            sys.exit(exit_code)
        return exit_code


def _print_click_error(error) -> int:
    """Print a Click error as one line on stderr and return its exit code."""
    # Running softkm without arguments shows the help, which Click raises as a usage error.
    if type(error).__name__ == "NoArgsIsHelpError":
        typer.echo(error.format_message(), err=True)
        return 0
    message = " ".join(error.format_message().split()).rstrip(".")
    context = getattr(error, "ctx", None)
    command = context.command_path if context is not None else "softkm"
    hint = f"; run '{command} --help' for usage" if isinstance(error, _UsageError) else ""
    typer.echo(f"softkm: error: {message}{hint}", err=True)
    return error.exit_code


app = typer.Typer(
    name="softkm",
    cls=_OneLineErrorGroup,
    help="k-means clustering with hard, soft and Gumbel-softmax assignment modes.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain Click help: Rich's help formatter would add about 90 ms to every --help.
    rich_markup_mode=None,
)


def _print_version(value: bool) -> None:
    if value:
        from softkm import __version__

        typer.echo(f"softkm {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """k-means clustering with hard, soft and Gumbel-softmax assignment modes."""


class Mode(str, Enum):
    hard = "hard"
    soft = "soft"
    gumbel = "gumbel"


class Dtype(str, Enum):
    float64 = "float64"
    float32 = "float32"


class Missing(str, Enum):
    error = "error"
    drop = "drop"


class Engine(str, Enum):
    local = "local"
    dask = "dask"


class Algorithm(str, Enum):
    hamerly = "hamerly"
    lloyd = "lloyd"


class Optimizer(str, Enum):
    adam = "adam"
    gd = "gd"
    scaled_gd = "scaled-gd"


def _positive_finite(value: Optional[float]) -> Optional[float]:
    if value is not None and not (math.isfinite(value) and value > 0):
        raise typer.BadParameter(f"must be finite and > 0, got {value}")
    return value


def _split_names(value: Optional[str]) -> Optional[list[str]]:
    if value is None:
        return None
    names = [name.strip() for name in value.split(",") if name.strip()]
    if not names:
        raise typer.BadParameter("expected a comma-separated list of column names")
    return names


# Options shared by several commands, declared once so they mean the same everywhere.
InputArg = Annotated[
    str,
    typer.Argument(metavar="INPUT", help="Input table: a CSV, TSV, gzip CSV or Parquet file, a folder of Parquet files or a quoted "
                   "glob such as 'data/*.parquet' (both streamed from disk), or - for stdin."),
]
ClustersOpt = Annotated[int, typer.Option("-k", "--n-clusters", min=1, help="Number of clusters.")]
ModeOpt = Annotated[Mode, typer.Option("--mode", help="Assignment mode: hard (Lloyd), soft (softmax) or gumbel (Gumbel-softmax).")]
TauOpt = Annotated[
    Optional[float],
    typer.Option(
        "--tau",
        callback=_positive_finite,
        help="Temperature relative to the within-cluster scale s (the weighted mean squared distance of "
        "the points to their nearest initial centroid): memberships are softmax(-d / (tau * s)). "
        "1 is a cluster's own spread, small values approach hard assignment. Soft and gumbel "
        "modes default to 0.5. Hard mode uses tau only for --probabilities, which requires it.",
    ),
]
SeedOpt = Annotated[int, typer.Option("--seed", min=0, help="Seed of every random choice; the same seed gives the same output bytes, except measured runtimes.")]
ColumnsOpt = Annotated[Optional[str], typer.Option("--columns", help="Comma-separated feature columns (default: every numeric column).")]
ExcludeOpt = Annotated[Optional[str], typer.Option("--exclude", help="Comma-separated columns to leave out of the features.")]
WeightsOpt = Annotated[Optional[str], typer.Option("--weights", help="Column of non-negative sample weights.")]
MissingOpt = Annotated[Missing, typer.Option("--missing", help="What to do with rows with missing or infinite values: error, or drop them.")]
DtypeOpt = Annotated[Dtype, typer.Option("--dtype", help="Floating-point type of the computation.")]
StandardizeOpt = Annotated[bool, typer.Option("--standardize", help="Z-score every feature before clustering; centroids are written in the original units.")]
DelimiterOpt = Annotated[Optional[str], typer.Option("--delimiter", help="CSV field delimiter (default ',', tab for .tsv, ';' detected).")]
DecimalOpt = Annotated[Optional[str], typer.Option("--decimal", help="Decimal mark of CSV numbers (default '.', ',' detected with ';').")]
NoHeaderOpt = Annotated[bool, typer.Option("--no-header", help="The CSV has no header row; columns are named x1, x2, ...")]
OutputOpt = Annotated[str, typer.Option("-o", "--output", help="Labels output (.csv, .tsv, .csv.gz or .parquet), or - for stdout.")]
KeepOpt = Annotated[Optional[str], typer.Option("--keep", help="Comma-separated input columns to copy into the labels output, such as an id.")]
ProbabilitiesOpt = Annotated[bool, typer.Option("--probabilities", help="Add membership columns p_0 .. p_{k-1} to the labels output.")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Replace existing output files.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Print no summary, progress or warnings.")]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show a traceback for errors (also SOFTKM_DEBUG=1).")]
EngineOpt = Annotated[
    Engine,
    typer.Option("--engine", help="local: this process. dask: the passes run on a dask.distributed cluster "
                 "(needs pip install 'softkm[dask]')."),
]
SchedulerOpt = Annotated[
    Optional[str],
    typer.Option("--scheduler", help="Address of a running Dask scheduler, such as tcp://10.0.0.5:8786, for --engine "
                 "dask. [default: start a local cluster on 127.0.0.1 and close it at the end]"),
]
MemoryLimitOpt = Annotated[
    Optional[str],
    typer.Option("--memory-limit", help="Stream Parquet input from disk in batches sized for this much memory, such "
                 "as 2GB or 512MiB. [default: stream folders, globs and Parquet files larger than the available memory]"),
]


@app.command()
def fit(
    input: InputArg,
    n_clusters: ClustersOpt,
    mode: ModeOpt = Mode.hard,
    tau: TauOpt = None,
    tau_start: Annotated[
        Optional[float],
        typer.Option("--tau-start", callback=_positive_finite,
                     help="First temperature of the annealing, relative like --tau. Soft mode anneals geometrically "
                     "from it down to --tau over the first half of --max-iter; gumbel mode follows "
                     "max(tau, tau_start * exp(-rate * t)). [default: --tau for soft, max(1, --tau) for gumbel]"),
    ] = None,
    anneal_rate: Annotated[float, typer.Option("--anneal-rate", min=0.0, help="Gumbel temperature decay rate r per iteration.")] = 0.02,
    straight_through: Annotated[bool, typer.Option("--straight-through", help="Gumbel mode: one-hot samples forward, soft gradient backward.")] = False,
    optimizer: Annotated[Optimizer, typer.Option("--optimizer", help="adam (default), gd (plain gradient descent) or scaled-gd (step divided by each centroid's membership).")] = Optimizer.adam,
    learning_rate: Annotated[
        Optional[float],
        typer.Option("--learning-rate", callback=_positive_finite,
                     help="adam: step as a fraction of sqrt(s), the within-cluster distance [0.05]; gd: multiple of "
                     "the gradient [0.5]; scaled-gd: multiple of the scaled gradient [1.0]."),
    ] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", min=1, help="Rows per mini-batch gradient step (soft and gumbel; default: all rows).")] = None,
    init: Annotated[str, typer.Option("--init", help="k-means++, random, or a CSV/Parquet file of starting centroids with the feature columns.")] = "k-means++",
    init_sample: Annotated[int, typer.Option("--init-sample", min=1, help="k-means++ and random starts use a seeded uniform sample of this many rows (all rows when there are fewer).")] = 100_000,
    n_init: Annotated[int, typer.Option("--n-init", min=1, help="Number of restarts; the best is kept (inertia, or the soft objective in soft mode).")] = 1,
    max_iter: Annotated[int, typer.Option("--max-iter", min=1, help="Maximum iterations per restart.")] = 300,
    tol: Annotated[float, typer.Option("--tol", min=0.0, help="Hard: total squared centroid shift relative to the mean feature variance. Soft: relative objective change and step relative to sqrt(s). Gumbel mode and mini-batches have no stopping test: they run --max-iter steps.")] = 1e-4,
    seed: SeedOpt = 0,
    algorithm: Annotated[Algorithm, typer.Option("--algorithm", help="Hard mode on in-memory data. hamerly skips the points that distance bounds prove cannot change cluster, and lloyd recomputes every distance. Both give the same labels.")] = Algorithm.hamerly,
    columns: ColumnsOpt = None,
    exclude: ExcludeOpt = None,
    weights: WeightsOpt = None,
    missing: MissingOpt = Missing.error,
    dtype: DtypeOpt = Dtype.float64,
    standardize: StandardizeOpt = False,
    delimiter: DelimiterOpt = None,
    decimal: DecimalOpt = None,
    no_header: NoHeaderOpt = False,
    output: OutputOpt = "-",
    keep: KeepOpt = None,
    centroids: Annotated[Optional[str], typer.Option("--centroids", help="Write the centroids (cluster plus feature columns, original units) here.")] = None,
    model: Annotated[Optional[str], typer.Option("--model", help="Write the JSON model here, for softkm assign.")] = None,
    probabilities: ProbabilitiesOpt = False,
    force: ForceOpt = False,
    engine: EngineOpt = Engine.local,
    scheduler: SchedulerOpt = None,
    memory_limit: MemoryLimitOpt = None,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Fit k-means to INPUT and write labels, centroids and a model."""
    with _command(debug):
        from softkm import report, workflow

        read = workflow.ReadOptions(delimiter, decimal, not no_header, _split_names(columns), _split_names(exclude),
                                    weights, missing.value, dtype.value)
        outputs = workflow.OutputOptions(output, centroids, model, _split_names(keep) or [], probabilities, force)
        init_is_file = init not in ("k-means++", "random")
        fit_options = dict(
            mode=mode.value, init="k-means++" if init_is_file else init, n_init=n_init, max_iter=max_iter, tol=tol,
            seed=seed, tau=tau, tau_start=tau_start, anneal_rate=anneal_rate, optimizer=optimizer.value,
            learning_rate=learning_rate, straight_through=straight_through, batch_size=batch_size,
            standardize=standardize, init_sample=init_sample, algorithm=algorithm.value,
        )
        _reject_unused_options(
            mode, probabilities, {
                "--tau": tau, "--tau-start": tau_start, "--learning-rate": learning_rate, "--batch-size": batch_size,
                "--optimizer": None if optimizer is Optimizer.adam else optimizer.value,
                "--anneal-rate": None if anneal_rate == 0.02 else anneal_rate,
                "--straight-through": straight_through or None,
            },
        )
        scale = workflow.ScaleOptions(engine.value, scheduler, memory_limit)
        with _print_warnings(quiet), report.progress(total=max_iter * n_init, enabled=not quiet) as on_iteration:
            job = workflow.run_fit(input, n_clusters, fit_options, read, outputs,
                                   init_path=init if init_is_file else None, on_iteration=on_iteration, scale=scale)
        if not quiet:
            report.print_fit_summary(job)


@app.command()
def assign(
    model: Annotated[str, typer.Argument(metavar="MODEL", help="A JSON model written by softkm fit --model.")],
    input: InputArg,
    output: OutputOpt = "-",
    keep: KeepOpt = None,
    probabilities: ProbabilitiesOpt = False,
    tau: Annotated[Optional[float], typer.Option("--tau", callback=_positive_finite, help="Temperature for --probabilities, relative to the model's within-cluster scale (required for a hard model).")] = None,
    missing: MissingOpt = Missing.error,
    delimiter: DelimiterOpt = None,
    decimal: DecimalOpt = None,
    no_header: NoHeaderOpt = False,
    force: ForceOpt = False,
    engine: EngineOpt = Engine.local,
    scheduler: SchedulerOpt = None,
    memory_limit: MemoryLimitOpt = None,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Assign the rows of INPUT to the clusters of a saved MODEL."""
    with _command(debug):
        from softkm import report, workflow

        read = workflow.ReadOptions(delimiter, decimal, not no_header, missing=missing.value)
        outputs = workflow.OutputOptions(output, keep=_split_names(keep) or [], probabilities=probabilities, force=force)
        scale = workflow.ScaleOptions(engine.value, scheduler, memory_limit)
        with _print_warnings(quiet):
            job = workflow.run_assign(model, input, read, outputs, tau, scale)
        if not quiet:
            report.print_assign_summary(job)


@app.command()
def compare(
    input: InputArg,
    n_clusters: ClustersOpt,
    modes: Annotated[str, typer.Option("--modes", help="Comma-separated modes to compare: hard, soft, gumbel.")] = "hard,soft,gumbel",
    tau: Annotated[
        str,
        typer.Option("--tau", help="Comma-separated temperatures for soft and gumbel, each relative to the within-cluster "
                     "scale s as in softkm fit; one row per mode and tau."),
    ] = "0.5",
    seed: SeedOpt = 0,
    n_init: Annotated[int, typer.Option("--n-init", min=1, help="Restarts per fit; the best is kept. Every mode starts each restart from the same k-means++ centroids.")] = 1,
    repeat: Annotated[int, typer.Option("--repeat", min=1, help="Runs of each fit for timing; the runtime column is their median.")] = 1,
    max_iter: Annotated[int, typer.Option("--max-iter", min=1, help="Maximum iterations per restart.")] = 300,
    tol: Annotated[float, typer.Option("--tol", min=0.0, help="Convergence tolerance, as in softkm fit.")] = 1e-4,
    truth: Annotated[Optional[str], typer.Option("--truth", help="Column of true labels: left out of the features, and adds the columns ari, nmi and centroid_index.")] = None,
    output_format: Annotated[
        Optional[str],
        typer.Option("--format", help="table, json, csv or markdown. [default: table when stdout is a terminal, else csv]"),
    ] = None,
    plot: Annotated[Optional[str], typer.Option("--plot", help="Write convergence curves and a scatter of the clusters of each fit to this .png or .svg file (needs matplotlib).")] = None,
    columns: ColumnsOpt = None,
    exclude: ExcludeOpt = None,
    weights: WeightsOpt = None,
    missing: MissingOpt = Missing.error,
    dtype: DtypeOpt = Dtype.float64,
    standardize: StandardizeOpt = False,
    delimiter: DelimiterOpt = None,
    decimal: DecimalOpt = None,
    no_header: NoHeaderOpt = False,
    force: ForceOpt = False,
    engine: EngineOpt = Engine.local,
    scheduler: SchedulerOpt = None,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Fit INPUT in every mode from the same starts and print the results side by side."""
    with _command(debug):
        from softkm import comparison, report, workflow
        from softkm.errors import OptionError

        if output_format is not None and output_format not in report.COMPARE_FORMATS:
            raise typer.BadParameter(
                f"{output_format!r} is not one of {', '.join(report.COMPARE_FORMATS)}", param_hint="'--format'"
            )
        try:
            taus = comparison.parse_taus(tau)
        except OptionError as error:
            raise typer.BadParameter(str(error), param_hint="'--tau'") from None
        settings = comparison.CompareSettings(
            comparison.parse_modes(modes), taus, seed, n_init, repeat, max_iter, tol, standardize, dtype.value
        )
        read = workflow.ReadOptions(delimiter, decimal, not no_header, _split_names(columns), _split_names(exclude),
                                    weights, missing.value, dtype.value)
        input_path = None if input == "-" else input
        if plot is not None:
            from softkm import plotting

            plotting.check_plot_output(plot, force=force, input_path=input_path)
        scale = workflow.ScaleOptions(engine.value, scheduler)
        with _print_warnings(quiet), workflow.dask_client(scale) as client:
            result = comparison.run_compare(input, n_clusters, settings, read, truth, client=client)
        if plot is not None:
            plotting.write_comparison_plot(result, plot, force=force, input_path=input_path)
        report.print_comparison(result, output_format or ("table" if sys.stdout.isatty() else "csv"))


@contextmanager
def _command(debug: bool):
    """Turn softkm's errors, interrupts and closed pipes into exit codes and one-line messages."""
    from softkm.errors import SoftkmError

    debug = debug or os.environ.get("SOFTKM_DEBUG", "") not in ("", "0")
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    except SoftkmError as error:
        if debug:
            raise
        typer.echo(f"softkm: error: {error}", err=True)
        raise typer.Exit(1) from None
    except _Terminated:
        typer.echo("softkm: terminated by SIGTERM; outputs not yet renamed into place were discarded", err=True)
        raise typer.Exit(143) from None
    except KeyboardInterrupt:
        typer.echo("softkm: interrupted; outputs not yet renamed into place were discarded", err=True)
        raise typer.Exit(130) from None
    except Exception as error:
        if type(error).__name__ == "OutputClosed":
            raise typer.Exit(0) from None
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def _print_warnings(quiet: bool):
    """Print the warnings raised inside the block as 'softkm: warning:' lines, unless ``quiet``.

    The lines are printed when the block ends, also on an error, so that the error line
    comes last. Warnings that ``run_fit`` records itself are printed with the summary.
    """
    from softkm import report
    from softkm.errors import SoftkmWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SoftkmWarning)
        try:
            yield
        finally:
            if not quiet:
                for message in dict.fromkeys(str(item.message) for item in caught):
                    report.warning(message)


class _Terminated(BaseException):
    """Raised from the SIGTERM handler, so that cleanup code runs as for Ctrl-C."""


def _raise_interrupt(signum, frame) -> None:
    raise _Terminated()


# The modes each option acts in, for fit. --tau also sets the temperature of hard-mode
# probabilities.
_OPTION_MODES = {
    "--tau": ("soft", "gumbel"),
    "--tau-start": ("soft", "gumbel"),
    "--learning-rate": ("soft", "gumbel"),
    "--batch-size": ("soft", "gumbel"),
    "--optimizer": ("soft", "gumbel"),
    "--anneal-rate": ("gumbel",),
    "--straight-through": ("gumbel",),
}


def _reject_unused_options(mode: Mode, probabilities: bool, given_options: dict) -> None:
    """Raise OptionError for options given on the command line that ``mode`` would ignore."""
    from softkm.errors import OptionError

    for option, value in given_options.items():
        if value is None or mode.value in _OPTION_MODES[option]:
            continue
        if option == "--tau" and probabilities:
            continue
        modes = " and ".join(_OPTION_MODES[option]) + (" modes" if len(_OPTION_MODES[option]) > 1 else " mode")
        raise OptionError(
            f"{option} applies to {modes} only, and this fit is --mode {mode.value}; "
            f"drop {option} or choose --mode {_OPTION_MODES[option][0]}"
        )


def main() -> None:
    """Run the command line (the ``softkm`` console script)."""
    _bound_malloc_retention()
    app()


def _bound_malloc_retention() -> None:
    """Make glibc return freed large temporaries to the OS instead of keeping them per thread.

    One arena (M_ARENA_MAX -8) lets the worker threads reuse each other's freed blocks.
    Blocks above 8 MiB (M_MMAP_THRESHOLD -3) are unmapped when freed, and free memory
    above 16 MiB at the top of the heap (M_TRIM_THRESHOLD -1) is returned. The engine's
    2 MiB distance blocks stay below the threshold, because mapping them for every chunk
    costs page faults. Other C libraries lack these options, so the call is skipped there.
    """
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION"):
            return
        import ctypes

        mallopt = ctypes.CDLL(None).mallopt
    except (ValueError, OSError, AttributeError):
        return
    mallopt(-8, 1)
    mallopt(-3, 8 << 20)
    mallopt(-1, 16 << 20)


if __name__ == "__main__":
    main()
