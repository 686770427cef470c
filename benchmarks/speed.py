"""Speed and memory of softkm against scikit-learn and faiss, measured side by side.

Every comparison runs in this one process (or its children), interleaved run by run,
so that both sides see the same machine load. The tables report medians with the
min-max spread and, above all, ratios. Sections:

1. Lloyd iterations: ``softkm.engine.fit`` against scikit-learn ``KMeans(algorithm=
   "lloyd", n_init=1, init=<same centroids>, tol=0)`` and faiss ``Kmeans`` from the
   same centroids, for max_iter iterations each, on three shapes in float32 and float64.
2. One soft and one Gumbel-softmax iteration against one hard iteration, from the
   per-iteration timestamps of the same fits, and lower bounds of those ratios: the
   passes that no exact relaxed step can skip, timed against one plain Lloyd pass.
3. The whole ``softkm fit`` command on a 1,000,000 x 32 float32 Parquet file against a
   script that reads it with pandas and runs scikit-learn's KMeans, with their peak
   resident memory.
4. The start-up time of ``softkm --help``.

Usage (``make bench`` runs it with the defaults and rewrites the section of
docs/benchmarks.md between the markers)::

    python benchmarks/speed.py [--repeat 5] [--quick] [--write docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SOFTKM = str(Path(sys.executable).with_name("softkm"))
MARKER_START = "<!-- speed:start -->"
MARKER_END = "<!-- speed:end -->"

SHAPES = [(1_000_000, 2, 16), (200_000, 32, 64), (50_000, 256, 256)]
QUICK_SHAPES = [(100_000, 2, 16), (20_000, 32, 64), (5_000, 256, 256)]
DTYPES = ["float32", "float64"]


@dataclass
class Timing:
    """Seconds of repeated runs of one contender."""

    runs: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.runs)

    def spread(self) -> str:
        return f"{min(self.runs):.4f}-{max(self.runs):.4f}"


def make_data(n_samples: int, n_features: int, n_clusters: int, dtype: str, seed: int = 0):
    """Return X (n_samples, n_features) with n_clusters Gaussian blobs, and k starting rows."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(-10, 10, size=(n_clusters, n_features))
    labels = rng.integers(0, n_clusters, n_samples)
    X = centres[labels] + rng.standard_normal((n_samples, n_features))
    X = X.astype(dtype)
    start = X[rng.choice(n_samples, n_clusters, replace=False)].astype(np.float64)
    return X, start


def time_lloyd(shapes, repeat: int, max_iter: int) -> list[dict]:
    """Time hard, soft and gumbel fits, scikit-learn and faiss, interleaved."""
    from sklearn.cluster import KMeans

    from softkm import engine

    try:
        import faiss
    except ImportError:
        faiss = None

    rows = []
    for n_samples, n_features, n_clusters in shapes:
        for dtype in DTYPES:
            X, start = make_data(n_samples, n_features, n_clusters, dtype)
            times = {name: [] for name in
                     ("softkm", "softkm_lloyd", "sklearn", "faiss", "hard_loop", "lloyd_loop", "soft_loop",
                      "gumbel_loop")}
            sklearn_iters = set()
            for _ in range(repeat):
                began = time.perf_counter()
                hard = engine.fit(X, n_clusters, init=start, max_iter=max_iter, tol=0, dtype=dtype)
                times["softkm"].append(time.perf_counter() - began)
                times["hard_loop"].append(_loop_seconds_per_iteration(hard))

                began = time.perf_counter()
                reference = KMeans(n_clusters, init=start.astype(dtype), n_init=1, max_iter=max_iter,
                                   tol=0, algorithm="lloyd").fit(X)
                times["sklearn"].append(time.perf_counter() - began)
                sklearn_iters.add(reference.n_iter_)

                if faiss is not None:
                    X32 = X if dtype == "float32" else X.astype(np.float32)
                    began = time.perf_counter()
                    index = faiss.Kmeans(n_features, n_clusters, niter=max_iter, seed=0, max_points_per_centroid=n_samples)
                    index.train(X32, init_centroids=start.astype(np.float32))
                    times["faiss"].append(time.perf_counter() - began)

                began = time.perf_counter()
                plain = engine.fit(X, n_clusters, init=start, max_iter=max_iter, tol=0, dtype=dtype, algorithm="lloyd")
                times["softkm_lloyd"].append(time.perf_counter() - began)
                times["lloyd_loop"].append(_loop_seconds_per_iteration(plain))
                for mode in ("soft", "gumbel"):
                    relaxed = engine.fit(X, n_clusters, init=start, max_iter=max_iter, tol=0, dtype=dtype, mode=mode)
                    times[f"{mode}_loop"].append(_loop_seconds_per_iteration(relaxed))

            rows.append(dict(
                shape=(n_samples, n_features, n_clusters),
                dtype=dtype,
                iterations=max_iter,
                softkm_iterations=hard.n_iter,
                sklearn_iterations=sorted(sklearn_iters),
                timings={name: Timing(values) for name, values in times.items() if values},
            ))
            print(_lloyd_line(rows[-1]), file=sys.stderr, flush=True)
    return rows


def time_floors(shapes, repeat: int) -> list[dict]:
    """Time, pass against pass, the work that no exact relaxed step can skip.

    A step of the relaxed modes needs every distance: one (k, d) x (d, m) product per
    block. It needs a stable softmax: the maximum of each row subtracted, then one
    exponential per entry. And it needs the gradient's contraction over the rows, a
    (k, m) x (m, d) product of the same size. Gumbel-softmax also draws one Gumbel value
    per entry. These passes run on softkm's thread pool, chunk by chunk as the engine
    does, interleaved with one plain Lloyd pass (``assignment_pass``). Every other
    operation of a relaxed step comes on top, so the ratios are lower bounds of soft /
    Lloyd and gumbel / Lloyd.
    """
    from softkm import kernels
    from softkm.chunks import ChunkedData
    from softkm.engine import DEFAULT_TAU
    from softkm.lloyd import assignment_pass
    from softkm.relaxed import within_cluster_scale

    rows = []
    for n_samples, n_features, n_clusters in shapes:
        for dtype in DTYPES:
            X, start = make_data(n_samples, n_features, n_clusters, dtype)
            X -= X.mean(axis=0)
            start = start - start.mean(axis=0)
            data = ChunkedData.build(X, None, n_clusters)
            # Centroids and half norms times 2 / T give the scores in the units of the
            # logits, as in the kernel, so the exponential gets the arguments of a
            # default soft step. With one or two features the kernel folds the half
            # norms into the product, and so does this pass.
            temperature = DEFAULT_TAU * within_cluster_scale(data, start)
            centroids = (start * (2.0 / temperature)).astype(dtype)
            half_norms = (kernels.row_norms_squared(start) / temperature).astype(dtype)
            block = kernels.block_rows(n_clusters)
            folded = n_features + 1 <= kernels._THIN_PRODUCT_MAX_COLUMNS

            def products(chunk):
                augmented = kernels._AugmentedRows(centroids, half_norms, block) if folded else None
                for rows_of_block in kernels.chunk_slices(chunk.X.shape[0], block):
                    part = chunk.X[rows_of_block]
                    if augmented is not None:
                        scores = np.empty((n_clusters, part.shape[0]), dtype=part.dtype)
                        augmented.scores(part, out=scores)
                    else:
                        scores = centroids @ kernels.features_major(part)  # (k, m)
                        scores -= half_norms[:, None]
                    scores -= scores.max(axis=0)
                    np.exp(scores, out=scores)
                    scores @ part  # (k, d), the gradient's contraction

            def noise(chunk):
                generator = np.random.Generator(np.random.SFC64(chunk.index))
                for rows_of_block in kernels.chunk_slices(chunk.X.shape[0], block):
                    size = rows_of_block.stop - rows_of_block.start
                    kernels.gumbel_noise(generator, (n_clusters, size), np.float32)

            times = {"lloyd": [], "products": [], "noise": []}
            for _ in range(repeat):
                began = time.perf_counter()
                assignment_pass(data, start)
                times["lloyd"].append(time.perf_counter() - began)
                for name, kernel in (("products", products), ("noise", noise)):
                    began = time.perf_counter()
                    for _ in data.map(kernel):
                        pass
                    times[name].append(time.perf_counter() - began)
            rows.append(dict(shape=(n_samples, n_features, n_clusters), dtype=dtype,
                             timings={name: Timing(values) for name, values in times.items()}))
    return rows


def _loop_seconds_per_iteration(result) -> float:
    """Return the median time of one iteration, from the fit's per-iteration timestamps."""
    stamps = [0.0] + [record.seconds for record in result.history]
    return statistics.median(np.diff(stamps[1:])) if len(stamps) > 2 else stamps[-1]


def _lloyd_line(row: dict) -> str:
    timings = row["timings"]
    ratio = timings["softkm"].median / timings["sklearn"].median
    return f"{row['shape']} {row['dtype']}: softkm/sklearn {ratio:.2f}"


def time_command(repeat: int, n_samples: int, max_iter: int) -> dict:
    """Time ``softkm fit`` on a Parquet file against pandas + scikit-learn, with peak RSS."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    with tempfile.TemporaryDirectory(prefix="softkm-bench-") as folder:
        folder = Path(folder)
        X, _ = make_data(n_samples, 32, 64, "float32", seed=1)
        path = folder / "data.parquet"
        table = pa.table({f"x{j}": X[:, j] for j in range(X.shape[1])})
        pq.write_table(table, path)
        input_bytes = X.nbytes
        del X, table

        softkm_command = [
            SOFTKM, "fit", str(path), "-k", "64", "--n-init", "1", "--max-iter", str(max_iter), "--tol", "0",
            "--dtype", "float32", "--quiet", "--force",
            "--output", str(folder / "labels.parquet"), "--model", str(folder / "model.json"),
        ]
        script = folder / "reference.py"
        script.write_text(REFERENCE_SCRIPT)
        reference_command = [sys.executable, str(script), str(path), str(folder / "labels_reference.parquet"),
                             str(max_iter)]

        results = {"softkm": [], "reference": []}
        memory = {"softkm": [], "reference": []}
        for _ in range(repeat):
            for name, command in (("softkm", softkm_command), ("reference", reference_command)):
                seconds, peak = _run_measured(command)
                results[name].append(seconds)
                memory[name].append(peak)
        print(f"fit command: softkm/reference {statistics.median(results['softkm']) / statistics.median(results['reference']):.2f}",
              file=sys.stderr, flush=True)
        return dict(
            n_samples=n_samples,
            input_bytes=input_bytes,
            command=" ".join(["softkm"] + softkm_command[1:]).replace(str(folder), "$TMP"),
            timings={name: Timing(values) for name, values in results.items()},
            peak_bytes={name: max(values) for name, values in memory.items()},
        )


REFERENCE_SCRIPT = """\
import sys

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans

path, output, max_iter = sys.argv[1], sys.argv[2], int(sys.argv[3])
X = pd.read_parquet(path).to_numpy(dtype=np.float32)
model = KMeans(64, init="k-means++", n_init=1, max_iter=max_iter, tol=0, random_state=0).fit(X)
pd.DataFrame({"cluster": model.labels_}).to_parquet(output)
"""


# Linux carries a process's peak RSS across exec, and a child started by vfork or
# posix_spawn inherits the parent's. The benchmark process keeps large arrays, so the
# commands are started from this small launcher, whose own peak is a few MB.
LAUNCHER = """\
import os, subprocess, sys, time
began = time.perf_counter()
process = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)
_, status, usage = os.wait4(process.pid, 0)
print(time.perf_counter() - began, os.waitstatus_to_exitcode(status), usage.ru_maxrss * 1024)
"""


def _run_measured(command: list[str]) -> tuple[float, int]:
    """Run a command and return (wall seconds, peak resident bytes of that command)."""
    output = subprocess.run([sys.executable, "-c", LAUNCHER, *command], capture_output=True, text=True, check=True)
    seconds, exit_code, peak = output.stdout.split()
    if int(exit_code) != 0:
        raise SystemExit(f"benchmark command failed with exit code {exit_code}: {' '.join(command)}")
    return float(seconds), int(peak)


def time_help(repeat: int) -> Timing:
    """Time ``softkm --help`` from process start to exit."""
    runs = []
    for _ in range(repeat):
        runs.append(_run_measured([SOFTKM, "--help"])[0])
    return Timing(runs)


def machine_lines() -> list[str]:
    """Describe the CPU, cores, BLAS and library versions."""
    import sklearn
    from threadpoolctl import threadpool_info

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    blas = [f"{info['internal_api']} {info['version']} ({info['num_threads']} threads)"
            for info in threadpool_info() if info["user_api"] == "blas" and "numpy" in info["filepath"]]
    versions = [f"Python {platform.python_version()}", f"NumPy {np.__version__}", f"scikit-learn {sklearn.__version__}"]
    try:
        import faiss

        versions.append(f"faiss {faiss.__version__}")
    except ImportError:
        versions.append("faiss not installed")
    return [
        f"- CPU: {cpu}, {os.cpu_count()} logical cores; softkm used {_softkm_threads()} threads",
        f"- NumPy BLAS: {', '.join(blas) or 'unknown'}",
        f"- Versions: {', '.join(versions)}",
        f"- Date: {time.strftime('%Y-%m-%d')}",
    ]


def _softkm_threads() -> int:
    from softkm.parallel import get_num_threads

    return get_num_threads()


def render(
    lloyd_rows: list[dict], floor_rows: list[dict], command: dict | None, help_timing: Timing | None, repeat: int
) -> str:
    """Return the Markdown section with every table."""
    lines = [MARKER_START, "", "## Speed and memory against scikit-learn and faiss", ""]
    lines.append("Measured by `make bench` (`python benchmarks/speed.py`), which runs every contender in one")
    lines.append(f"process, interleaved, {repeat} times; figures are medians with the min-max spread. The")
    lines.append("machine is shared, so the ratios are the figures to compare, not the absolute times.")
    lines.append("")
    lines.extend(machine_lines())
    lines.append("")

    iterations = lloyd_rows[0]["iterations"]
    lines.append(f"### Lloyd iterations ({iterations} iterations from the same initial centroids, tol 0)")
    lines.append("")
    lines.append("Seconds per iteration are the whole fit's time divided by the iterations, so each side")
    lines.append("includes its set-up and final assignment. faiss trains in float32 whatever the input dtype.")
    lines.append("softkm runs its default hard loop, which skips the distances that Hamerly's bounds rule")
    lines.append("out and gives the labels and iteration count of plain Lloyd iterations (tested).")
    lines.append("The plain loop (`--algorithm lloyd`), which")
    lines.append("computes every distance, is shown beside it.")
    lines.append("")
    lines.append("| n, d, k | dtype | softkm s/iter | plain Lloyd s/iter | scikit-learn s/iter | faiss s/iter "
                 "| softkm / sklearn | plain / sklearn | softkm / faiss |")
    lines.append("|---|---|---|---|---|---|---|---|---|")
    ratios = []
    for row in lloyd_rows:
        timings = row["timings"]
        per = {name: timing.median / row["iterations"] for name, timing in timings.items()}
        ratio = timings["softkm"].median / timings["sklearn"].median
        ratios.append(ratio)
        faiss_cell = f"{per['faiss']:.4f}" if "faiss" in per else "n/a"
        faiss_ratio = f"{timings['softkm'].median / timings['faiss'].median:.2f}" if "faiss" in timings else "n/a"
        n, d, k = row["shape"]
        plain_ratio = timings["softkm_lloyd"].median / timings["sklearn"].median
        lines.append(
            f"| {n:,}, {d}, {k} | {row['dtype']} | {per['softkm']:.4f} | {per['softkm_lloyd']:.4f} "
            f"| {per['sklearn']:.4f} | {faiss_cell} | **{ratio:.2f}** | {plain_ratio:.2f} | {faiss_ratio} |"
        )
    geometric_mean = float(np.exp(np.mean(np.log(ratios))))
    lines.append("")
    lines.append(f"Geometric mean of softkm / scikit-learn: **{geometric_mean:.2f}** (target at most 0.8); "
                 f"largest case: **{max(ratios):.2f}** (target at most 1.2).")
    iteration_notes = sorted({str(row["sklearn_iterations"]) for row in lloyd_rows})
    lines.append(f"scikit-learn ran {', '.join(iteration_notes)} iterations and softkm "
                 f"{sorted({row['softkm_iterations'] for row in lloyd_rows})}.")
    lines.append("")

    lines.append("### Soft and Gumbel-softmax iterations against hard ones")
    lines.append("")
    lines.append("Median time of one iteration inside the fit loop (from the fit's per-iteration timestamps),")
    lines.append("same data and initial centroids. A hard iteration here is a plain Lloyd iteration")
    lines.append("(`algorithm=\"lloyd\"`), which computes every distance as the relaxed modes do. The")
    lines.append("default hard loop with Hamerly's bounds skips most distances once the centroids settle;")
    lines.append("its median iteration is shown for reference.")
    lines.append("")
    lines.append("| n, d, k | dtype | Lloyd s/iter | Hamerly s/iter | soft s/iter | gumbel s/iter | soft / Lloyd | gumbel / Lloyd |")
    lines.append("|---|---|---|---|---|---|---|---|")
    for row in lloyd_rows:
        timings = row["timings"]
        plain, bounded, soft, gumbel = (timings[f"{mode}_loop"].median for mode in ("lloyd", "hard", "soft", "gumbel"))
        n, d, k = row["shape"]
        lines.append(f"| {n:,}, {d}, {k} | {row['dtype']} | {plain:.4f} | {bounded:.4f} | {soft:.4f} | {gumbel:.4f} "
                     f"| **{soft / plain:.2f}** | **{gumbel / plain:.2f}** |")
    lines.append("")

    if floor_rows:
        lines.append("### Lower bounds of a relaxed iteration")
        lines.append("")
        lines.append("An exact soft step computes every distance, a stable softmax and the gradient's")
        lines.append("contraction over the rows. The last is a second matrix product of the size of the")
        lines.append("distance product, with the gradient weights as a dense (k, n) matrix: every point has")
        lines.append("a nonzero membership in every cluster. Gumbel-softmax also draws one Gumbel value per")
        lines.append("entry (32 random bits and two logarithms). This table times only those passes: the")
        lines.append("distance product with the centroids' half norms, the row maximum, its subtraction,")
        lines.append("the exponential and the second product. It times them on the same thread pool, against")
        lines.append("one plain Lloyd pass, so the ratios are lower bounds for the soft / Lloyd and")
        lines.append("gumbel / Lloyd ratios above.")
        lines.append("")
        lines.append("| n, d, k | dtype | Lloyd pass s | products + exp s | Gumbel noise s "
                     "| soft floor / Lloyd | gumbel floor / Lloyd |")
        lines.append("|---|---|---|---|---|---|---|")
        for row in floor_rows:
            timings = row["timings"]
            lloyd, products, noise = (timings[name].median for name in ("lloyd", "products", "noise"))
            n, d, k = row["shape"]
            lines.append(f"| {n:,}, {d}, {k} | {row['dtype']} | {lloyd:.4f} | {products:.4f} | {noise:.4f} "
                         f"| {products / lloyd:.2f} | {(products + noise) / lloyd:.2f} |")
        lines.append("")

    if command is not None:
        timings = command["timings"]
        ratio = timings["softkm"].median / timings["reference"].median
        limit = 1.5 * command["input_bytes"] + 100e6
        lines.append("### The whole fit command")
        lines.append("")
        lines.append(f"`{command['command']}` on a {command['n_samples']:,} x 32 float32 Parquet file")
        lines.append(f"({command['input_bytes'] / 1e6:.0f} MB as an array), against a script that reads the file with")
        lines.append("pandas, runs scikit-learn's KMeans with the same settings and writes the labels to Parquet.")
        lines.append("")
        lines.append("| contender | wall s (median) | spread | peak RSS MB |")
        lines.append("|---|---|---|---|")
        for name, label in (("softkm", "softkm fit"), ("reference", "pandas + scikit-learn")):
            lines.append(f"| {label} | {timings[name].median:.2f} | {timings[name].spread()} "
                         f"| {command['peak_bytes'][name] / 1e6:.0f} |")
        lines.append("")
        lines.append(f"softkm / reference time: **{ratio:.2f}** (target at most 0.8). softkm's peak RSS: "
                     f"**{command['peak_bytes']['softkm'] / 1e6:.0f} MB** against the limit "
                     f"1.5 x input + 100 MB = {limit / 1e6:.0f} MB.")
        lines.append("")

    if help_timing is not None:
        lines.append("### Start-up")
        lines.append("")
        lines.append(f"`softkm --help`: median **{help_timing.median * 1000:.0f} ms** "
                     f"(spread {help_timing.spread()} s) over {len(help_timing.runs)} runs, target under 150 ms.")
        lines.append("")
    lines.append(MARKER_END)
    return "\n".join(lines) + "\n"


def write_section(path: Path, section: str) -> None:
    """Replace the text between the markers in ``path``, or append the section."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if MARKER_START in text and MARKER_END in text:
        before = text[: text.index(MARKER_START)]
        after = text[text.index(MARKER_END) + len(MARKER_END):].lstrip("\n")
        text = before + section + ("\n" + after if after else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs per contender (default 5)")
    parser.add_argument("--max-iter", type=int, default=20, help="iterations per fit (default 20)")
    parser.add_argument("--quick", action="store_true", help="shapes 10 times smaller, for a smoke run")
    parser.add_argument("--skip-command", action="store_true", help="skip the whole-command comparison")
    parser.add_argument("--write", type=Path, help="Markdown file whose speed section is replaced")
    args = parser.parse_args()
    warnings.simplefilter("ignore")

    shapes = QUICK_SHAPES if args.quick else SHAPES
    lloyd_rows = time_lloyd(shapes, args.repeat, args.max_iter)
    floor_rows = time_floors(shapes, args.repeat)
    command = None
    if not args.skip_command:
        command = time_command(max(3, args.repeat // 2), 100_000 if args.quick else 1_000_000, 20)
    help_timing = time_help(max(10, args.repeat))
    section = render(lloyd_rows, floor_rows, command, help_timing, args.repeat)
    print(section)
    if args.write is not None:
        write_section(args.write, section)


if __name__ == "__main__":
    main()
