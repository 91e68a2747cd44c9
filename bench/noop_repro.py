"""Time DVC's no-op path on the current workspace (target: a second `dvc repro` <= 3 s).

Run after `make repro`:  .venv/bin/python bench/noop_repro.py
Prints the median of 3 runs of `dvc status` and of `dvc repro` with nothing to do, and the ratio
to the 3 s target.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

TARGET_SECONDS = 3.0
DVC = str(Path(sys.executable).parent / "dvc")


def timed(args: list[str]) -> float:
    started = time.perf_counter()
    result = subprocess.run(args, capture_output=True, text=True, check=True)
    elapsed = time.perf_counter() - started
    if "Running stage" in result.stdout:
        raise SystemExit("the workspace is not up to date; run `make repro` first")
    return elapsed


def main() -> None:
    for args in ([DVC, "status"], [DVC, "repro"]):
        median = statistics.median(timed(args) for _ in range(3))
        ratio = median / TARGET_SECONDS
        print(f"{' '.join(args[1:]):8s} {median:5.2f} s   ({ratio:.2f} x the {TARGET_SECONDS:.0f} s target)")


if __name__ == "__main__":
    main()
