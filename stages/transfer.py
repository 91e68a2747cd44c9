"""transfer stage: the source model on the target domain, zero-shot with each adapter method and
fine-tuned by each strategy on stratified fractions and k-shot subsets of the target train split,
over several seeds."""

from __future__ import annotations

import argparse

from mer.logs import setup_logging
from mer.params import check_source_fold, load_section
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
        args.model, args.adapters, list(adapt.methods),
        f"{args.metadata}/source.parquet", f"{args.features}/source",
        f"{args.metadata}/target.parquet", f"{args.features}/target",
        transfer, finetune, loop_config(train), args.out, args.swap_features if adapt.swap else None,
    )  # fmt: skip


if __name__ == "__main__":
    main()
