"""evaluate stage: metrics JSON, dvc plot data and PNGs from every prediction file."""

from __future__ import annotations

import argparse

from mer.logs import setup_logging
from mer.params import SECTIONS, as_dict, load_section
from mer.report import evaluate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--source", default="data/predictions/source")
    parser.add_argument("--ablation", default="data/predictions/ablation")
    parser.add_argument("--transfer", default="data/predictions/transfer")
    parser.add_argument("--folds", default="data/predictions/folds")
    parser.add_argument("--live", default="dvclive")
    parser.add_argument("--metrics", default="metrics")
    parser.add_argument("--plots", default="plots")
    args = parser.parse_args()
    setup_logging()
    # every section shaped the predictions evaluated here; their hash goes into the provenance
    params = {name: as_dict(load_section(name)) for name in SECTIONS}
    baselines = list(load_section("train").baselines)
    variants = list(load_section("ablation").variants)
    folds = [str(f) for f in load_section("corpora").folds]
    evaluate(
        args.source, args.transfer, args.live, args.metrics, args.plots, params, baselines,
        args.ablation, variants, args.folds, folds,
    )  # fmt: skip


if __name__ == "__main__":
    main()
