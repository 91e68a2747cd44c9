"""train stage: the main fusion model (``fusion.mode``) or, with ``--baseline MODE``, a baseline,
trained on the source domain; saves the model and its source-test predictions."""

from __future__ import annotations

import argparse

from mer.logs import setup_logging
from mer.params import FUSION_MODES, load_section
from mer.training import train_source_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--baseline", choices=FUSION_MODES, help="train this baseline mode instead")
    parser.add_argument("--metadata", default="data/metadata/source.parquet")
    parser.add_argument("--features", default="data/features/source")
    parser.add_argument("--model-out", required=True)
    parser.add_argument("--predictions-out", required=True)
    parser.add_argument("--live-dir", required=True)
    args = parser.parse_args()
    setup_logging()
    model_params, train_params = load_section("model"), load_section("train")
    fusion_params = None if args.baseline else load_section("fusion")
    mode = args.baseline or fusion_params.mode
    train_source_model(
        mode, model_params, train_params, fusion_params, args.metadata, args.features,
        args.model_out, args.predictions_out, args.live_dir,
    )  # fmt: skip


if __name__ == "__main__":
    main()
