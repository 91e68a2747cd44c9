"""evaluate stage: metrics JSON, dvc plot data and PNGs from every prediction file."""

from __future__ import annotations

import argparse

from mer.logs import setup_logging
from mer.report import evaluate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--source", default="data/predictions/source")
    parser.add_argument("--transfer", default="data/predictions/transfer")
    parser.add_argument("--live", default="dvclive")
    parser.add_argument("--metrics", default="metrics")
    parser.add_argument("--plots", default="plots")
    args = parser.parse_args()
    setup_logging()
    evaluate(args.source, args.transfer, args.live, args.metrics, args.plots)


if __name__ == "__main__":
    main()
