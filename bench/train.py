"""Training-loop benchmark: the landed loop (commit 6e826ee) vs mer's current one, side by side.

Both sides run the same work in a fresh process each, the landed code checked out of git
(``git archive BASE src/mer`` into a temporary folder, so a plain clone is enough):

1. one source training, :func:`mer.train.train_source_model` (the train stage, one seed,
   ``--train-epochs``);
2. a slice of the transfer stage's few-shot grid, :func:`mer.transfer.transfer_to_target`
   (``--strategies`` x ``--fractions`` / ``--shots`` x ``--seeds``; no adapters, no swap),
   from the source model each side trained in step 1 (or ``--model``, a checkpoint both sides
   can read).

Both sides train this repo's settings: the landed side reads BASE's own params.yaml with this
repo's value for every key BASE knows (``landed_params``), so it runs the landed model where a
key is new (attention dropout = ``model.dropout``; no audio frame pooling). Where the model
changed the predictions differ by design and the comparison columns say so; where only the loop
changed they must agree exactly.

Printed per step: seconds per run (source training; fine-tuning: the stage's wall time over its
fine-tunings) of each side and their ratio, and whether the predictions agree: the largest
absolute difference of any class probability over every prediction file, whether every predicted
label is equal, and (transfer) whether the records (best epoch, dev score) are equal.

    .venv/bin/python bench/train.py [--data-root .] [--model models/fusion/main]
        [--strategies full head ...] [--fractions 20 100] [--shots 3] [--seeds 0 1]
        [--model models/fusion/main] [--single-thread]

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
#: the params sections the two steps read (the landed model is built from model + fusion)
READ_SECTIONS = ("model", "fusion", "train", "transfer")


def _overlay(landed: dict, current: dict, prefix: str, unknown: list[str]) -> dict:
    """``landed`` with each key both know set to ``current``'s value (recursively); the keys
    only ``current`` has are appended to ``unknown`` as dotted names."""
    merged = dict(landed)
    for key, value in current.items():
        name = f"{prefix}{key}"
        if key not in landed:
            unknown.append(name)
        elif isinstance(value, dict) and isinstance(landed[key], dict):
            merged[key] = _overlay(landed[key], value, f"{name}.", unknown)
        else:
            merged[key] = value
    return merged


def landed_params(out: Path) -> tuple[Path, list[str]]:
    """BASE's own params.yaml with this repo's values for every key BASE knows (so both sides
    train the same settings), and the read sections' keys BASE does not know (BASE's model does
    what it did before them: e.g. attention dropout = ``model.dropout``)."""
    import yaml

    landed = yaml.safe_load(
        subprocess.run(["git", "-C", str(REPO), "show", f"{BASE}:params.yaml"], capture_output=True,
                       check=True, text=True).stdout
    )  # fmt: skip
    current = yaml.safe_load((REPO / "params.yaml").read_text())
    unknown: list[str] = []
    merged = _overlay(landed, {s: current[s] for s in landed if s in current}, "", unknown)
    out.write_text(yaml.safe_dump(merged, sort_keys=False))
    return out, [name for name in unknown if name.split(".")[0] in READ_SECTIONS]


def run_side(args: argparse.Namespace) -> None:
    """One side (the imports resolve to that side's ``src``): run the step, print its seconds."""
    import torch

    from mer import transfer
    from mer.params import load_model_config, load_section
    from mer.train import loop_config, train_source_model

    root, out, params_path = Path(args.data_root), Path(args.out), Path(args.params)
    metadata, features = root / "data/metadata", root / "data/features"
    # the default run's settings (this repo's params.yaml), on the CPU
    train = dataclasses.replace(load_section("train", params_path), device="cpu")
    workers = 1
    started = time.perf_counter()
    if args.side == "train":
        train_source_model(
            config=load_model_config(path=params_path),
            train_params=dataclasses.replace(train, seeds=(0,), epochs=args.train_epochs),
            metadata_path=metadata / "source.parquet", feature_root=features / "source",
            model_dir=out / "model", predictions_dir=out / "predictions", live_dir=out / "live",
            fold="main", splits_path=root / "splits/source.csv",
        )  # fmt: skip
        runs = 1
    else:
        params = dataclasses.replace(
            load_section("transfer", params_path), strategies=tuple(args.strategies),
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
    name: str,
    src: Path,
    step: str,
    out: Path,
    args: argparse.Namespace,
    model: str,
    params: Path,
    threads: int = 0,
) -> dict:
    """Run ``step`` of one side in a fresh process (``threads`` > 0: torch's thread count); its
    seconds, run count, worker processes and threads."""
    command = [sys.executable, __file__, "--side", step, "--out", str(out), "--model", model,
               "--params", str(params),
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
    parser.add_argument("--model", help="a source model both sides fine-tune (default: each its own)")
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
    parser.add_argument("--params", help=argparse.SUPPRESS)
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
    landed, changed = landed_params(work / "landed-params.yaml")
    params = {"landed": landed, "current": REPO / "params.yaml"}
    print(f"landed: {BASE}; current: {REPO}; data: {Path(args.data_root).resolve()}")
    if changed:
        print(f"settings BASE does not have ({', '.join(changed)}): predictions may differ by design")

    seconds = {}
    for name, src in sources.items():
        step = side(name, src, "train", work / name / "train", args, "-", params[name])
        seconds[name] = step["seconds"]
    files, max_abs, equal = compare(work / "landed/train/predictions", work / "current/train/predictions")
    print(f"\nsource training (1 seed, {args.train_epochs} epochs, {files} prediction files)")
    print(f"{'landed s':>9s} {'current s':>9s} {'speed-up':>8s} {'max|dp|':>9s} {'labels':>6s}")
    speedup = seconds["landed"] / seconds["current"]
    print(f"{seconds['landed']:9.1f} {seconds['current']:9.1f} {speedup:7.2f}x {max_abs:9.2e} {equal!s:>6}")

    def model(name: str) -> str:  # (an absolute --model stays as it is)
        own = work / name.removesuffix("-1-thread") / "train/model"
        return str(Path(args.data_root) / args.model) if args.model else str(own)

    variants = {"landed": "landed"}
    if args.single_thread:
        variants["landed-1-thread"] = "landed"
    variants["current"] = "current"
    results = {
        name: side(
            name,
            sources[code],
            "transfer",
            work / name / "transfer",
            args,
            model(name),
            params[code],
            threads=1 if name.endswith("-1-thread") else 0,
        )
        for name, code in variants.items()
    }
    print(
        f"\ntransfer: {results['current']['runs']} fine-tunings ({', '.join(args.strategies)} x fractions "
        f"{args.fractions}, shots {args.shots} x seeds {args.seeds}); predictions compared with current's"
    )
    print(f"{'loop':46} {'s/run':>6} {'speed-up':>8} {'epochs':>6} {'s/epoch':>7} {'speed-up':>8}"
          f" {'max|dp|':>9} {'labels':>6} {'records':>7}")  # fmt: skip
    current = work / "current/transfer/predictions"
    slowest = results["landed"]["seconds"] / results["landed"]["runs"]
    slowest_epoch = slowest / epochs_run(work / "landed/transfer/predictions")
    for name, result in results.items():
        per_run = result["seconds"] / result["runs"]
        epochs = epochs_run(work / name / "transfer/predictions")
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
        print(
            f"{label:46} {per_run:6.2f} {slowest / per_run:7.2f}x {epochs:6.1f} {per_run / epochs:7.3f}"
            f" {slowest_epoch / (per_run / epochs):7.2f}x{comparison}"
        )
    print("(epochs: the mean epochs a fine-tuning ran, from its best epoch and early stopping; a")
    print(" side whose runs stop earlier is faster per run, not per epoch: compare both speed-ups)")


def epochs_run(predictions: Path) -> float:
    """The mean epochs the fine-tunings in ``predictions/records.json`` ran: early stopping ends a
    run ``patience`` epochs after its best (epoch -1: the source model), at most ``epochs``
    (``scratch`` uses the train section's loop, the others the transfer section's)."""
    transfer, train = _params_section("transfer"), _params_section("train")
    records = json.loads((predictions / "records.json").read_text())
    counts = [
        min(loop["epochs"], record["best_epoch"] + 1 + loop["patience"])
        for strategies in records.values()
        for strategy, seeds in strategies.items()
        for record in seeds.values()
        for loop in [train if strategy == "scratch" else transfer]
    ]
    return sum(counts) / len(counts)


def _params_section(name: str) -> dict:
    import yaml

    return yaml.safe_load((REPO / "params.yaml").read_text())[name]


if __name__ == "__main__":
    main()
