"""Choose ``fusion.modality_dropout``: the main model trained at several values, side by side.

On the default run's features (``data/``, ``splits/``), each value trains the main model (the
``fusion`` section, the ``train`` loop and seeds) and scores the source test split clean and with
each modality removed. Per value it prints UA with its 95% interval (:mod:`mer.uncertainty`), the
worst missing-modality UA, and the paired change from value 0 for each condition.

    .venv/bin/python bench/modality_dropout.py [--values 0 0.1 0.2 0.3] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from pathlib import Path

from mer import uncertainty
from mer.checkpoints import load_model
from mer.data import load_splits
from mer.params import load_model_config, load_section
from mer.train import predict, train_source_model


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--values", nargs="+", type=float, default=[0.0, 0.1, 0.2, 0.3])
    parser.add_argument("--seeds", nargs="+", type=int)
    parser.add_argument("--data-root", default=".")
    args = parser.parse_args()
    root = Path(args.data_root)
    train = load_section("train", root / "params.yaml")
    if args.seeds:
        train = dataclasses.replace(train, seeds=tuple(args.seeds))
    work = Path(tempfile.mkdtemp(prefix="mer-bench-dropout-"))
    config = load_model_config(path=root / "params.yaml")
    runs: dict[float, dict[str, uncertainty.Runs]] = {}
    for value in args.values:
        out = work / f"p{value}"
        train_source_model(
            config=dataclasses.replace(config, modality_dropout=value), train_params=train,
            metadata_path=root / "data/metadata/source.parquet", feature_root=root / "data/features/source",
            model_dir=out / "model", predictions_dir=out / "predictions", live_dir=out / "live",
            fold="main", splits_path=root / "splits/source.csv",
        )  # fmt: skip
        trained = load_model(out / "model")
        test = load_splits(
            root / "data/metadata/source.parquet", root / "data/features/source", trained.modalities,
            "main", root / "splits/source.csv",
        )["test"]  # fmt: skip
        conditions = {"clean": test}
        conditions |= {
            f"without {m}": test.only([o for o in trained.modalities if o != m]) for m in trained.modalities
        }
        runs[value] = {
            name: uncertainty.Runs.from_frames(
                {"test": {s: predict(model, data) for s, model in trained.models.items()}},
                num_classes=len(trained.classes),
            )
            for name, data in conditions.items()
        }
    names = list(runs[args.values[0]])
    print(f"main model, source test ({train.seeds} seeds): UA % [95% interval]; Δ vs p={args.values[0]:g}")
    print(f"{'p':>5} " + " ".join(f"{n:>28}" for n in names) + f" {'worst missing':>14}")
    for value, by_condition in runs.items():
        cells, worst = [], 1.0
        for name in names:
            est = uncertainty.estimate(by_condition[name], ("ua",))["ua"]
            if name != "clean":
                worst = min(worst, est.value)
            cell = f"{100 * est.value:.1f} [{100 * est.low:.1f}, {100 * est.high:.1f}]"
            if value != args.values[0]:
                delta = uncertainty.compare(by_condition[name], runs[args.values[0]][name], ("ua",))["ua"]
                cell += f" {100 * delta.delta:+.1f}{'*' if delta.verdict != 'within noise' else ''}"
            cells.append(f"{cell:>28}")
        print(f"{value:5.2f} " + " ".join(cells) + f" {100 * worst:13.1f}")
    print("* the paired change from the first value is beyond noise (95% interval excludes 0)")


if __name__ == "__main__":
    main()
