"""metadata stage: the source and target corpora (``corpora``; the built-in synthetic corpus by
default) as uniform metadata tables, protocol split files, a quarantine list and counts; first of
all, the check that the corpora support every model the run trains (the main model, and with
``train.strict_recipes`` every listed recipe; see ``mer.recipes``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from mer.external import external_by_role
from mer.logs import run_stage, setup_logging
from mer.metadata import build_metadata
from mer.params import load_model_config, load_section
from mer.recipes import ROLE_KEYS, RunModels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--raw", default="data/raw/synthetic", help="where the synthetic corpus files go")
    parser.add_argument("--out", default="data/metadata", help="where <role>.parquet and quarantine.csv go")
    parser.add_argument("--splits", default="splits", help="where the versioned <role>.csv split files go")
    parser.add_argument("--metrics", default="metrics/metadata.json")
    args = parser.parse_args()
    setup_logging()
    train, ablation = load_section("train"), load_section("ablation")
    listed = {ROLE_KEYS["baseline"]: train.baselines, ROLE_KEYS["ablation"]: ablation.variants}
    models = RunModels(
        main=load_model_config(),
        recipes={key: {name: load_model_config(name) for name in names} for key, names in listed.items()},
        strict=train.strict_recipes,
    )
    build_metadata(
        cfg=load_section("corpora"),
        synthetic_cfg=load_section("synthetic"),
        raw_root=Path(args.raw),
        out=Path(args.out),
        splits_dir=Path(args.splits),
        metrics_path=Path(args.metrics),
        models=models,
        external=external_by_role(load_section("extract")),  # features-only corpora, per role (mer.external)
    )


if __name__ == "__main__":
    run_stage(main)
