"""Quality of the three modes on the benchmark sets with ground truth.

For every CSV in the data folder (features x1..xd, truth column `label`), fits hard,
soft (tau 0.5 and 0.1, with and without annealing from tau 2) and gumbel mode with
the same seeds and prints a Markdown table of hard-inertia ratios to hard mode and
adjusted Rand indices against the truth. Usage:

    python benchmarks/quality.py [DATA_FOLDER] [--seeds 5]
"""

from __future__ import annotations

import argparse
import platform
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from softkm import engine
from softkm.metrics import adjusted_rand_index

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

VARIANTS = {
    "soft 0.5": dict(mode="soft", tau=0.5),
    "soft 0.1": dict(mode="soft", tau=0.1),
    "soft 0.5 annealed": dict(mode="soft", tau=0.5, tau_start=2.0),
    "gumbel": dict(mode="gumbel"),
    "gumbel ST": dict(mode="gumbel", straight_through=True),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", default=str(DEFAULT_DATA))
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    paths = sorted(Path(args.data).glob("*.csv"))
    if not paths:
        raise SystemExit(f"no CSV files in {args.data}")
    warnings.simplefilter("ignore")

    print(f"Seeds 0..{args.seeds - 1}, n_init 1, defaults otherwise; Python {platform.python_version()}, NumPy {np.__version__}.")
    print("Ratio = hard inertia of the mode's centroids / hard mode's inertia from the same seed (mean, worst).")
    print("ARI = adjusted Rand index of the labels against the truth (mean over seeds).\n")
    header = ["set", "hard ARI"] + [f"{name} ratio (mean / worst), ARI" for name in VARIANTS]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for path in paths:
        frame = pd.read_csv(path)
        truth = frame.pop("label").to_numpy()
        X = frame.to_numpy(np.float64)
        n_clusters = len(np.unique(truth))
        hard = [engine.fit(X, n_clusters, seed=seed) for seed in range(args.seeds)]
        cells = [path.stem, f"{np.mean([adjusted_rand_index(truth, r.labels) for r in hard]):.3f}"]
        for options in VARIANTS.values():
            ratios, scores = [], []
            for seed, reference in enumerate(hard):
                result = engine.fit(X, n_clusters, seed=seed, **options)
                ratios.append(result.inertia / reference.inertia)
                scores.append(adjusted_rand_index(truth, result.labels))
            cells.append(f"{np.mean(ratios):.4f} / {max(ratios):.4f}, {np.mean(scores):.3f}")
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
