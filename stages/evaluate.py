"""evaluate stage: headline metrics (with intervals and paired deltas), result tables and plots
from every prediction file."""

from __future__ import annotations

import argparse

from mer.evaluate import evaluate
from mer.logs import run_stage, setup_logging
from mer.params import SECTIONS, as_dict, load_recipes, load_section
from mer.protocols import PROTOCOL_NAMES, PROTOCOLS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--source", default="data/predictions/source")
    parser.add_argument("--ablation", default="data/predictions/ablation")
    parser.add_argument("--transfer", default="data/predictions/transfer")
    parser.add_argument("--metadata", default="data/metadata/source.parquet")
    parser.add_argument("--live", default="dvclive")
    parser.add_argument("--metrics", default="metrics")
    parser.add_argument("--results", default="results")
    parser.add_argument("--plots", default="plots")
    args = parser.parse_args()
    setup_logging()
    # every section that shaped the predictions evaluated here (all but the robustness stage's);
    # their hash goes into the provenance
    params = {name: as_dict(load_section(name)) for name in SECTIONS if name != "robustness"}
    params["recipes"] = {name: as_dict(recipe) for name, recipe in load_recipes().items()}
    corpora = load_section("corpora")
    # the synthetic corpus's generated split keeps speakers apart, like the report's protocol line
    protocol = PROTOCOL_NAMES["speakers" if corpora.source == "synthetic" else PROTOCOLS[corpora.source]]
    evaluate(
        source_dir=args.source,
        ablation_dir=args.ablation,
        transfer_dir=args.transfer,
        metadata_path=args.metadata,
        live_root=args.live,
        metrics_dir=args.metrics,
        results_dir=args.results,
        plots_dir=args.plots,
        folds=[str(fold) for fold in corpora.folds],
        baselines=list(load_section("train").baselines),
        variants=list(load_section("ablation").variants),
        params=params,
        protocol=protocol,
    )


if __name__ == "__main__":
    run_stage(main)
