"""report stage: reports/summary.md from the result tables, metrics files, PNGs and metadata."""

from __future__ import annotations

import argparse

from mer.logs import run_stage, setup_logging
from mer.report import build_model_card, build_summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--metrics", default="metrics")
    parser.add_argument("--results", default="results")
    parser.add_argument("--png", default="plots/png")
    parser.add_argument("--metadata", default="data/metadata")
    parser.add_argument("--out", default="reports/summary.md")
    parser.add_argument("--model", default="models/fusion/main", help="transfer.source_fold's main model")
    parser.add_argument("--card", default="reports/model_card.md")
    args = parser.parse_args()
    setup_logging()
    build_summary(
        metrics_dir=args.metrics,
        results_dir=args.results,
        png_dir=args.png,
        metadata_dir=args.metadata,
        out=args.out,
    )
    build_model_card(
        model_dir=args.model, results_dir=args.results, metadata_dir=args.metadata, out=args.card
    )


if __name__ == "__main__":
    run_stage(main)
