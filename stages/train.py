"""train stage: the main model (the ``fusion`` section) or, with ``--recipe NAME``, a named
recipe (baseline or ablation variant), one model per ``train.seeds`` seed, trained on the source
corpus (with ``--fold``, on that protocol fold, e.g. an IEMOCAP session); saves the models and
their source-test predictions. Runs under ``torchrun`` too (DDP)."""

from __future__ import annotations

import argparse

from mer.logs import setup_logging
from mer.params import load_section
from mer.recipes import RECIPES, recipe
from mer.training import train_source_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--recipe", choices=list(RECIPES), help="train this recipe instead of `fusion`")
    parser.add_argument("--metadata", default="data/metadata/source.parquet")
    parser.add_argument("--features", default="data/features/source")
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--predictions-dir", required=True)
    parser.add_argument("--live-dir", required=True)
    parser.add_argument("--fold", help="train and test on this protocol fold (corpora.folds)")
    parser.add_argument("--splits", default="splits/source.csv", help="the split file holding --fold")
    args = parser.parse_args()
    setup_logging()
    model_params, train_params = load_section("model"), load_section("train")
    fusion = recipe(args.recipe) if args.recipe else load_section("fusion")
    train_source_model(
        fusion, model_params, train_params, args.metadata, args.features,
        args.model_dir, args.predictions_dir, args.live_dir, args.fold, args.splits if args.fold else None,
    )  # fmt: skip


if __name__ == "__main__":
    main()
