"""transfer stage: the source model on the target domain, zero-shot with each adapter method and
fine-tuned by each strategy on stratified fractions and k-shot subsets of the target train split,
over several seeds."""

from __future__ import annotations

import argparse

from mer.logs import run_stage, setup_logging
from mer.params import check_source_fold, load_section, swap_in_use
from mer.train import loop_config
from mer.transfer import transfer_to_target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="models/fusion/main", help="transfer.source_fold's model")
    parser.add_argument("--adapters", default="models/adapters")
    parser.add_argument("--metadata", default="data/metadata")
    parser.add_argument("--features", default="data/features")
    parser.add_argument("--out", default="data/predictions/transfer")
    parser.add_argument("--swap-features", default="data/features_swap/source/audio")
    args = parser.parse_args()
    setup_logging()
    transfer, train, adapt = load_section("transfer"), load_section("train"), load_section("adapt")
    check_source_fold(transfer, load_section("corpora"))
    finetune = loop_config(train, epochs=transfer.epochs, lr=transfer.lr, patience=transfer.patience)
    transfer_to_target(
        model_path=args.model,
        adapters_dir=args.adapters,
        adapt_methods=list(adapt.methods),
        source_metadata=f"{args.metadata}/source.parquet",
        source_features=f"{args.features}/source",
        target_metadata=f"{args.metadata}/target.parquet",
        target_features=f"{args.features}/target",
        params=transfer,
        finetune_cfg=finetune,
        scratch_cfg=loop_config(train),
        out_dir=args.out,
        swap_features=args.swap_features if swap_in_use(adapt, load_section("model")["modalities"]) else None,
    )


if __name__ == "__main__":
    run_stage(main)
