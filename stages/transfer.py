"""transfer stage: the source model on the target domain, zero-shot and fine-tuned on stratified
fractions of the target train split, with and without adapters."""

from __future__ import annotations

import argparse

from mer.features import write_json
from mer.logs import setup_logging
from mer.params import load_section
from mer.training import loop_config
from mer.transfer import transfer_to_target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="models/fusion")
    parser.add_argument("--adapters", default="models/adapters")
    parser.add_argument("--metadata", default="data/metadata/target.parquet")
    parser.add_argument("--features", default="data/features/target")
    parser.add_argument("--out", default="data/predictions/transfer")
    args = parser.parse_args()
    setup_logging()
    transfer, train = load_section("transfer"), load_section("train")
    cfg = loop_config(
        train, epochs=transfer.epochs, lr=transfer.lr, patience=transfer.patience, seed=transfer.seed
    )
    records = transfer_to_target(
        args.model, args.adapters, args.metadata, args.features, list(transfer.fractions), cfg, args.out
    )
    write_json(f"{args.out}/records.json", records)


if __name__ == "__main__":
    main()
