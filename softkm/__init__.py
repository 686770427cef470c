"""softkm: k-means clustering with hard, soft and Gumbel-softmax assignment modes."""

__version__ = "0.1.0"
__all__ = ["SoftKMeans"]


def __getattr__(name: str):
    # Imported on first use, so that `import softkm` (and `softkm --help`) does not load NumPy.
    if name == "SoftKMeans":
        from softkm.estimator import SoftKMeans

        return SoftKMeans
    raise AttributeError(f"module 'softkm' has no attribute {name!r}")
