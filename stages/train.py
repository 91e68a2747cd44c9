"""train stage: the main model (the ``fusion`` section) or, with ``--recipe NAME``, a named
recipe (params.yaml ``recipes``: a baseline or ablation variant), one model per ``train.seeds``
seed, trained and tested on one protocol fold of the source corpus (``--fold``: ``main`` or an
IEMOCAP session); saves the models and their dev and test predictions. Runs under ``torchrun``
too (DDP). A recipe the source corpus cannot support (``mer.recipes``: e.g. regression without a
sentiment score) writes a skip record instead, in seconds; an unsupported main model fails."""

from __future__ import annotations

import argparse

from mer.logs import run_stage, setup_logging
from mer.params import load_model_config, load_section
from mer.recipes import ROLE_KEYS, skip_if_unsupported
from mer.train import train_source_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--recipe", help="train this recipe (params.yaml recipes) instead of `fusion`")
    parser.add_argument("--role", choices=list(ROLE_KEYS), help="the list --recipe is in (for skip records)")
    parser.add_argument("--metadata", default="data/metadata/source.parquet")
    parser.add_argument("--features", default="data/features/source")
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--predictions-dir", required=True)
    parser.add_argument("--live-dir", required=True)
    parser.add_argument("--fold", default="main", help="train and test on this protocol fold (corpora.folds)")
    parser.add_argument("--splits", default="splits/source.csv", help="the split file holding --fold")
    args = parser.parse_args()
    setup_logging()
    config = load_model_config(args.recipe)
    skipped = skip_if_unsupported(
        config=config, recipe=args.recipe, role=args.role, metadata_path=args.metadata, fold=args.fold,
        out_dirs=[args.model_dir, args.predictions_dir, args.live_dir],
    )  # fmt: skip
    if skipped:
        return
    train_source_model(
        config=config,
        train_params=load_section("train"),
        metadata_path=args.metadata,
        feature_root=args.features,
        model_dir=args.model_dir,
        predictions_dir=args.predictions_dir,
        live_dir=args.live_dir,
        fold=args.fold,
        splits_path=args.splits,
    )


if __name__ == "__main__":
    run_stage(main)
