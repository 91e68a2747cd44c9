"""Training-loop benchmark: the landed loop (commit 6e826ee) vs mer's current one, side by side.

Both sides run the same work in a fresh process each, the landed code checked out of git
(``git archive BASE src/mer`` into a temporary folder, so a plain clone is enough):

1. one source training, :func:`mer.train.train_source_model` (the train stage, one seed,
   ``--train-epochs``);
2. a slice of the transfer stage's few-shot grid, :func:`mer.transfer.transfer_to_target`
   (``--strategies`` x ``--fractions`` / ``--shots`` x ``--seeds``; no adapters, no swap),
   from ``--model`` (the default run's main model; without it, the source model of step 1).

Printed per step: seconds per run (source training; fine-tuning: the stage's wall time over its
fine-tunings) of each side and their ratio, and whether the predictions agree: the largest
absolute difference of any class probability over every prediction file, whether every predicted
label is equal, and (transfer) whether the records (best epoch, dev score) are equal.

    .venv/bin/python bench/train.py [--data-root .] [--model models/fusion/main]
        [--strategies full head ...] [--fractions 20 100] [--shots 3] [--seeds 0 1]

Target on a 2-core CPU: >= 3x fewer seconds per fine-tuning; identical predictions.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

STRATEGIES = ("full", "head", "adapters", "scratch", "dann", "mmd", "coral")
BASE = "6e826ee"  # the landed loop: per-run model reload, per-batch padding, predict() per epoch
REPO = Path(__file__).resolve().parents[1]


def run_side(args: argparse.Namespace) -> None:
    """One side (the imports resolve to that side's ``src``): run the step, print its seconds."""
    from mer.params import TrainParams, TransferParams, load_model_config
    from mer.train import loop_config, train_source_model
    from mer.transfer import transfer_to_target

    root, out = Path(args.data_root), Path(args.out)
    metadata, features = root / "data/metadata", root / "data/features"
    train = TrainParams(device="cpu", seeds=(0,), epochs=args.train_epochs)
    started = time.perf_counter()
    if args.side == "train":
        train_source_model(
            config=load_model_config(path=root / "params.yaml"), train_params=train,
            metadata_path=metadata / "source.parquet", feature_root=features / "source",
            model_dir=out / "model", predictions_dir=out / "predictions", live_dir=out / "live",
            fold="main", splits_path=root / "splits/source.csv",
        )  # fmt: skip
        runs = 1
    else:
        params = TransferParams(
            strategies=tuple(args.strategies), fractions=tuple(args.fractions), shots=tuple(args.shots),
            seeds=tuple(args.seeds),
        )  # fmt: skip
        records = transfer_to_target(
            model_path=args.model, adapters_dir=out / "no-adapters", adapt_methods=[],
            source_metadata=metadata / "source.parquet", source_features=features / "source",
            target_metadata=metadata / "target.parquet", target_features=features / "target",
            params=params, out_dir=out / "predictions", scratch_cfg=loop_config(train),
            finetune_cfg=loop_config(train, epochs=params.epochs, lr=params.lr, patience=params.patience),
        )  # fmt: skip
        runs = sum(len(seeds) for strategies in records.values() for seeds in strategies.values())
    print(json.dumps({"seconds": time.perf_counter() - started, "runs": runs}))


def side(name: str, src: Path, step: str, out: Path, args: argparse.Namespace, model: str) -> dict:
    """Run ``step`` of one side in a fresh process; its seconds and run count."""
    command = [sys.executable, __file__, "--side", step, "--out", str(out), "--model", model,
               "--data-root", args.data_root, "--train-epochs", str(args.train_epochs),
               "--strategies", *args.strategies, "--fractions", *map(str, args.fractions),
               "--shots", *map(str, args.shots), "--seeds", *map(str, args.seeds)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(src), "MER_LOG_LEVEL": "WARNING", "TQDM_DISABLE": "1"}
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{name} side of {step} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def compare(old: Path, new: Path) -> tuple[int, float, bool]:
    """Prediction files compared, the largest |probability difference|, all labels equal."""
    files = sorted(p.relative_to(new) for p in new.rglob("*.parquet"))
    max_abs, labels_equal = 0.0, True
    for file in files:
        a, b = pd.read_parquet(old / file), pd.read_parquet(new / file)
        probabilities = [c for c in a.columns if c.startswith("prob_")]
        max_abs = max(max_abs, float(np.abs(a[probabilities].to_numpy() - b[probabilities].to_numpy()).max()))
        labels_equal &= bool((a["pred_id"].to_numpy() == b["pred_id"].to_numpy()).all())
    return len(files), max_abs, labels_equal


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-root", default=".", help="data/, splits/, params.yaml of a default run")
    parser.add_argument("--model", default="models/fusion/main", help="the source model to fine-tune")
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES))
    parser.add_argument("--fractions", nargs="*", type=int, default=[20, 100])
    parser.add_argument("--shots", nargs="*", type=int, default=[3])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--train-epochs", type=int, default=5, help="epochs of the source training")
    parser.add_argument("--side", choices=["train", "transfer"], help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        run_side(args)
        return

    work = Path(tempfile.mkdtemp(prefix="mer-bench-train-"))
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", BASE, "src/mer"], capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(work)], input=archive.stdout, check=True)
    sources = {"landed": work / "src", "current": REPO / "src"}
    print(f"landed: {BASE}; current: {REPO}; data: {Path(args.data_root).resolve()}")

    seconds = {}
    for name, src in sources.items():
        seconds[name] = side(name, src, "train", work / name / "train", args, args.model)["seconds"]
    files, max_abs, equal = compare(work / "landed/train/predictions", work / "current/train/predictions")
    print(f"\nsource training (1 seed, {args.train_epochs} epochs, {files} prediction files)")
    print(f"{'landed s':>9s} {'current s':>9s} {'speed-up':>8s} {'max|dp|':>9s} {'labels':>6s}")
    speedup = seconds["landed"] / seconds["current"]
    print(f"{seconds['landed']:9.1f} {seconds['current']:9.1f} {speedup:7.2f}x {max_abs:9.2e} {equal!s:>6}")

    model = args.model
    if not (Path(args.data_root) / model).exists() and not Path(model).exists():
        model = str(work / "current/train/model/seed0.pt")
        print(f"\n({args.model} not found: fine-tuning the source model trained above)")
    elif not Path(model).exists():
        model = str(Path(args.data_root) / model)
    results = {
        name: side(name, src, "transfer", work / name / "transfer", args, model)
        for name, src in sources.items()
    }
    runs = results["current"]["runs"]
    per_run = {name: result["seconds"] / result["runs"] for name, result in results.items()}
    landed, current = work / "landed/transfer/predictions", work / "current/transfer/predictions"
    files, max_abs, equal = compare(landed, current)
    same_records = json.loads((landed / "records.json").read_text()) == json.loads(
        (current / "records.json").read_text()
    )
    print(
        f"\ntransfer: {runs} fine-tunings ({', '.join(args.strategies)} x fractions {args.fractions}, "
        f"shots {args.shots} x seeds {args.seeds}), {files} prediction files"
    )
    print(
        f"{'landed s/run':>12} {'current s/run':>13} {'speed-up':>8} {'max|dp|':>9} {'labels':>6} "
        f"{'records':>7}"
    )
    speedup = per_run["landed"] / per_run["current"]
    print(
        f"{per_run['landed']:12.2f} {per_run['current']:13.2f} {speedup:7.2f}x {max_abs:9.2e} "
        f"{equal!s:>6} {same_records!s:>7}"
    )


if __name__ == "__main__":
    main()
