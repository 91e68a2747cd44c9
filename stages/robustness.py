"""robustness stage: the main model and the concat baseline with each modality removed and with
white / babble noise in the test audio (re-encoded with the encoder each model records)."""

from __future__ import annotations

import argparse

from mer.logs import run_stage, setup_logging
from mer.params import check_source_fold, load_section
from mer.robustness import evaluate_robustness


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="models/fusion/main", help="transfer.source_fold's main model")
    parser.add_argument("--concat", default="models/baselines/concat/main", help="the fold's concat baseline")
    parser.add_argument("--metadata", default="data/metadata/source.parquet")
    parser.add_argument("--features", default="data/features/source")
    parser.add_argument("--splits", default="splits/source.csv")
    parser.add_argument("--out", default="results/robustness.csv")
    parser.add_argument("--metrics", default="metrics/robustness.json")
    args = parser.parse_args()
    setup_logging()
    transfer = load_section("transfer")
    check_source_fold(transfer, load_section("corpora"))
    evaluate_robustness(
        models={"fusion": args.model, "concat": args.concat},
        metadata_path=args.metadata,
        feature_root=args.features,
        params=load_section("robustness"),
        out_csv=args.out,
        metrics_path=args.metrics,
        fold=str(transfer.source_fold),
        splits_path=args.splits,
    )


if __name__ == "__main__":
    run_stage(main)
