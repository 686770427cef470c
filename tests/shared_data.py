"""The folder of real benchmark sets that some tests read.

It is ``SOFTKM_BENCHMARK_DATA`` when that is set, else ``shared/data`` beside the
repository. Tests that need it skip, naming the folder, when it does not exist.
"""

import os
from pathlib import Path

BENCHMARK_DATA = Path(os.environ.get("SOFTKM_BENCHMARK_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")
