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
import dataclasses
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
    import torch

    from mer import transfer
    from mer.params import load_model_config, load_section
    from mer.train import loop_config, train_source_model

    root, out = Path(args.data_root), Path(args.out)
    metadata, features = root / "data/metadata", root / "data/features"
    # the default run's settings (this repo's params.yaml), on the CPU
    train = dataclasses.replace(load_section("train", REPO / "params.yaml"), device="cpu")
    workers = 1
    started = time.perf_counter()
    if args.side == "train":
        train_source_model(
            config=load_model_config(path=REPO / "params.yaml"),
            train_params=dataclasses.replace(train, seeds=(0,), epochs=args.train_epochs),
            metadata_path=metadata / "source.parquet", feature_root=features / "source",
            model_dir=out / "model", predictions_dir=out / "predictions", live_dir=out / "live",
            fold="main", splits_path=root / "splits/source.csv",
        )  # fmt: skip
        runs = 1
    else:
        params = dataclasses.replace(
            load_section("transfer", REPO / "params.yaml"), strategies=tuple(args.strategies),
            fractions=tuple(args.fractions), shots=tuple(args.shots), seeds=tuple(args.seeds),
        )  # fmt: skip
        records = transfer.transfer_to_target(
            model_path=args.model, adapters_dir=out / "no-adapters", adapt_methods=[],
            source_metadata=metadata / "source.parquet", source_features=features / "source",
            target_metadata=metadata / "target.parquet", target_features=features / "target",
            params=params, out_dir=out / "predictions", scratch_cfg=loop_config(train),
            finetune_cfg=loop_config(train, epochs=params.epochs, lr=params.lr, patience=params.patience),
        )  # fmt: skip
        runs = sum(len(seeds) for strategies in records.values() for seeds in strategies.values())
        if hasattr(transfer, "fewshot_workers"):  # the current loop's side-by-side processes
            workers = transfer.fewshot_workers("cpu", runs)
    seconds = time.perf_counter() - started
    print(
        json.dumps({"seconds": seconds, "runs": runs, "workers": workers, "threads": torch.get_num_threads()})
    )


def side(
    name: str, src: Path, step: str, out: Path, args: argparse.Namespace, model: str, threads: int = 0
) -> dict:
    """Run ``step`` of one side in a fresh process (``threads`` > 0: torch's thread count); its
    seconds, run count, worker processes and threads."""
    command = [sys.executable, __file__, "--side", step, "--out", str(out), "--model", model,
               "--data-root", args.data_root, "--train-epochs", str(args.train_epochs),
               "--strategies", *args.strategies, "--fractions", *map(str, args.fractions),
               "--shots", *map(str, args.shots), "--seeds", *map(str, args.seeds)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(src), "MER_LOG_LEVEL": "WARNING", "TQDM_DISABLE": "1"}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
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
    parser.add_argument("--data-root", default=".", help="data/ and splits/ of a default run")
    parser.add_argument("--model", default="models/fusion/main", help="the source model to fine-tune")
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES))
    parser.add_argument("--fractions", nargs="*", type=int, default=[50])
    parser.add_argument("--shots", nargs="*", type=int, default=[3])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--train-epochs", type=int, default=5, help="epochs of the source training")
    parser.add_argument(
        "--single-thread", action="store_true",
        help="also run the landed transfer loop single-threaded, as each current worker runs",
    )  # fmt: skip
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

    model = Path(args.data_root) / args.model  # (an absolute --model stays as it is)
    if not model.exists():
        print(f"\n({model} not found: fine-tuning the source model trained above)")
        model = work / "current/train/model/seed0.pt"
    variants = {"landed": (sources["landed"], 0)}
    if args.single_thread:
        variants["landed-1-thread"] = (sources["landed"], 1)
    variants["current"] = (sources["current"], 0)
    results = {
        name: side(name, src, "transfer", work / name / "transfer", args, str(model), threads)
        for name, (src, threads) in variants.items()
    }
    print(
        f"\ntransfer: {results['current']['runs']} fine-tunings ({', '.join(args.strategies)} x fractions "
        f"{args.fractions}, shots {args.shots} x seeds {args.seeds}); predictions compared with current's"
    )
    print(f"{'loop':46} {'s/run':>6} {'speed-up':>8} {'max|dp|':>9} {'labels':>6} {'records':>7}")
    current = work / "current/transfer/predictions"
    slowest = results["landed"]["seconds"] / results["landed"]["runs"]
    for name, result in results.items():
        per_run = result["seconds"] / result["runs"]
        threads = result["threads"] // result["workers"] or 1
        label = f"{name} ({result['workers']} process(es) x {threads} thread(s))"
        comparison = ""
        if name != "current":
            predictions = work / name / "transfer/predictions"
            _, max_abs, equal = compare(predictions, current)
            same = json.loads((predictions / "records.json").read_text()) == json.loads(
                (current / "records.json").read_text()
            )
            comparison = f" {max_abs:9.2e} {equal!s:>6} {same!s:>7}"
        print(f"{label:46} {per_run:6.2f} {slowest / per_run:7.2f}x{comparison}")


if __name__ == "__main__":
    main()
