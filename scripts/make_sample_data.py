"""Generate the synthetic sample tables in sample_data/.

Run from anywhere with ``python scripts/make_sample_data.py``. Every table comes from a
seeded numpy Generator and is written with softkm.tables.write_table, so a rerun with the
same numpy and pyarrow versions gives byte-identical files.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from softkm.tables import write_table

SEED = 20240601
DEFAULT_OUTPUT_DIR = Path(__file__).resolve().parent.parent / "sample_data"

# Customer segments: mean annual spend (currency units), visits per month, basket size (items).
CUSTOMER_SEGMENTS = (
    (450.0, 1.2, 4.0),  # occasional
    (2400.0, 4.5, 9.0),  # regular
    (9500.0, 6.0, 22.0),  # premium
    (5200.0, 1.8, 48.0),  # bulk buyers
)


def make_blobs(
    rng: np.random.Generator, centers: np.ndarray, n_samples: int, std: float, decimals: int
) -> pd.DataFrame:
    """Return n_samples points around ``centers`` (n_clusters, n_features) with a ``label`` column.

    Clusters get equal sizes, up to one point, and the rows are shuffled.
    """
    n_clusters, n_features = centers.shape
    labels = np.arange(n_samples) % n_clusters
    rng.shuffle(labels)
    points = centers[labels] + std * rng.standard_normal((n_samples, n_features))

    frame = pd.DataFrame(np.round(points, decimals), columns=[f"x{j}" for j in range(1, n_features + 1)])
    frame["label"] = labels.astype(np.int64)
    return frame


def make_separated_blobs(rng: np.random.Generator) -> pd.DataFrame:
    """Return 600 rows of 2 features around 4 centers 10 units apart, with standard deviation 1."""
    centers = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])
    return make_blobs(rng, centers, n_samples=600, std=1.0, decimals=3)


def make_overlapping_blobs(rng: np.random.Generator) -> pd.DataFrame:
    """Return 1500 rows of 5 features around 6 random centers, with standard deviation 1.5.

    The centers are drawn uniformly from [-4, 4] in each feature, so the clusters overlap.
    """
    centers = rng.uniform(-4.0, 4.0, size=(6, 5))
    return make_blobs(rng, centers, n_samples=1500, std=1.5, decimals=3)


def make_customers(rng: np.random.Generator, n_customers: int = 800) -> pd.DataFrame:
    """Return customer rows whose features have very different scales, with a ``segment`` truth column."""
    means = np.array(CUSTOMER_SEGMENTS)
    segments = rng.integers(0, len(CUSTOMER_SEGMENTS), size=n_customers)
    # Log-normal noise keeps every feature positive and right-skewed, as real spending data is.
    noise = np.exp(0.25 * rng.standard_normal((n_customers, means.shape[1])))
    values = means[segments] * noise

    return pd.DataFrame(
        {
            "customer_id": [f"C{number:04d}" for number in range(1, n_customers + 1)],
            "annual_spend": np.round(values[:, 0], 2),
            "visits_per_month": np.round(values[:, 1], 1),
            "basket_size": np.round(values[:, 2], 1),
            "segment": segments.astype(np.int64),
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--output-dir", type=Path, default=DEFAULT_OUTPUT_DIR, help="folder for the tables (default: sample_data/)"
    )
    output_dir = parser.parse_args().output_dir

    rng = np.random.default_rng(SEED)
    separated = make_separated_blobs(rng)
    overlapping = make_overlapping_blobs(rng)
    customers = make_customers(rng)

    write_table(separated, str(output_dir / "blobs_separated.csv"), force=True)
    write_table(separated, str(output_dir / "blobs_separated.parquet"), force=True)
    write_table(overlapping, str(output_dir / "blobs_overlapping.parquet"), force=True)
    write_table(customers, str(output_dir / "customers.csv"), force=True)


if __name__ == "__main__":
    main()
