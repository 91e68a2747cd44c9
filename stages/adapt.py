"""adapt stage: feature adapters (one per method in ``adapt.methods`` and modality), target-domain
features -> source-domain space, with their training losses and feature-space distances (a data
file for the report, not a declared metrics file)."""

from __future__ import annotations

import argparse

from mer.adapt import train_adapters
from mer.logs import run_stage, setup_logging
from mer.params import as_dict, load_section, swap_in_use
from mer.provenance import write_metrics
from mer.swap import train_swap_adapters


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--metadata", default="data/metadata")
    parser.add_argument("--features", default="data/features")
    parser.add_argument("--out", default="models/adapters")
    parser.add_argument("--diagnostics", default="results/adapt.json")
    parser.add_argument("--swap-features", default="data/features_swap/source/audio")
    args = parser.parse_args()
    setup_logging()
    cfg = load_section("adapt")
    modalities = list(load_section("model")["modalities"])  # those the models read
    records = train_adapters(
        cfg=cfg,
        modalities=modalities,
        source_metadata=f"{args.metadata}/source.parquet",
        target_metadata=f"{args.metadata}/target.parquet",
        source_features=f"{args.features}/source",
        target_features=f"{args.features}/target",
        out_dir=args.out,
    )
    if swap_in_use(cfg, modalities):
        records["swap"] = train_swap_adapters(
            cfg=cfg,
            metadata_path=f"{args.metadata}/source.parquet",
            model_features=f"{args.features}/source",
            cheap_features=args.swap_features,
            out_dir=f"{args.out}/swap",
        )
    write_metrics(args.diagnostics, {"adapt": records}, {"adapt": as_dict(cfg)}, args.features)


if __name__ == "__main__":
    run_stage(main)
