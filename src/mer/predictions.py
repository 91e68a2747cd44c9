"""The prediction files' layout, parsed and read in one place (the evaluate stage and ``mer.review``).

The train stage writes one parquet file per model, protocol fold and seed:
``<root>/<model>/<fold>/seed<k>.parquet`` (test split) and ``<root>/<model>/<fold>/dev/seed<k>.parquet``
(dev split), with ``<root>`` :data:`SOURCE_ROOT` for the main model and the baselines and
:data:`ABLATION_ROOT` for the ablation recipes. The transfer stage writes one folder of seed files
per setting (no fold folder: its one split is the target corpus's test split), read with
:func:`read_seeds`. A recipe the source corpus cannot support leaves a skip record
(``<root>/<model>/<fold>/skipped.json``, :mod:`mer.skips`) instead, read with :func:`read_skipped`.

>>> parse("data/predictions/source/fusion/1/dev/seed2.parquet", SOURCE_ROOT)
PredictionFile(model='fusion', fold='1', split='dev', seed=2)
>>> parse("data/predictions/source/fusion/seed0.parquet", SOURCE_ROOT) is None  # no fold folder
True
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pandas as pd

from mer.skips import read_skip

SOURCE_ROOT = "data/predictions/source"
ABLATION_ROOT = "data/predictions/ablation"
DEV = "dev"  # <fold>/dev/ holds the dev split's predictions
SPLITS = ("test", DEV)
SEED_FILE = re.compile(r"seed(\d+)\.parquet")
# <root>/folds/<k>/ is the per-fold tree of the layout before per-fold predictions, not a model
NOT_MODELS = frozenset({"folds"})

Files = dict[str, dict[int, str]]  # {fold: {seed: path}} of one model
Frames = dict[str, dict[int, pd.DataFrame]]  # {fold: {seed: predictions}} of one model


@dataclass(frozen=True)
class PredictionFile:
    """Where one prediction file sits in the layout.

    Attributes:
        model (str): model or recipe name (the folder under the root).
        fold (str): protocol fold (``main``, or a fold number).
        split (str): ``test`` or ``dev``.
        seed (int): training seed.
    """

    model: str
    fold: str
    split: str
    seed: int


def seed_of(name: str) -> int | None:
    """The seed of a ``seed<k>.parquet`` file name; None for any other name.

    >>> seed_of("seed12.parquet"), seed_of("seed.parquet"), seed_of("records.json")
    (12, None, None)
    """
    match = SEED_FILE.fullmatch(name)
    return int(match.group(1)) if match else None


def parse(path: str, root: str) -> PredictionFile | None:
    """``path`` as ``<root>/<model>/<fold>/[dev/]seed<k>.parquet``; None when it is anything else
    (another root, no fold folder, another file)."""
    path_parts, root_parts = PurePosixPath(path).parts, PurePosixPath(root).parts
    parts = path_parts[len(root_parts) :]
    if path_parts[: len(root_parts)] != root_parts or len(parts) not in (3, 4):
        return None
    seed = seed_of(parts[-1])
    model, fold = parts[0], parts[1]
    split = DEV if len(parts) == 4 else "test"
    if seed is None or model in NOT_MODELS or fold == DEV or (len(parts) == 4 and parts[2] != DEV):
        return None
    return PredictionFile(model, fold, split, seed)


def layout(paths: Iterable[str], root: str, split: str = "test") -> dict[str, Files]:
    """``{model: {fold: {seed: path}}}`` of the ``split`` files under ``root`` among ``paths``;
    models and folds in the order first seen, seeds ascending.

    >>> paths = ["r/b/1/seed1.parquet", "r/b/1/seed0.parquet", "r/a/1/dev/seed0.parquet", "x/c/seed0.parquet"]
    >>> layout(paths, "r")
    {'b': {'1': {0: 'r/b/1/seed0.parquet', 1: 'r/b/1/seed1.parquet'}}}
    >>> layout(paths, "r", "dev")
    {'a': {'1': {0: 'r/a/1/dev/seed0.parquet'}}}
    """
    if split not in SPLITS:
        raise ValueError(f"split {split!r}: expected one of {SPLITS}")
    found: dict[str, Files] = {}
    for path in paths:
        file = parse(path, root)
        if file is not None and file.split == split:
            found.setdefault(file.model, {}).setdefault(file.fold, {})[file.seed] = path
    return {
        model: {fold: dict(sorted(seeds.items())) for fold, seeds in folds.items()}
        for model, folds in found.items()
    }


def read_frames(files: Files, read: Callable[[str], bytes] | None = None) -> Frames:
    """``{fold: {seed: frame}}`` of one model's ``files``, each file's bytes from ``read(path)``
    (default: the local file)."""
    read = read or (lambda path: Path(path).read_bytes())
    return {
        fold: {seed: pd.read_parquet(io.BytesIO(read(path))) for seed, path in seeds.items()}
        for fold, seeds in files.items()
    }


def read_model(root: str | Path, model: str, folds: Sequence[str], split: str = "test") -> Frames:
    """One model's predictions on disk, ``{fold: {seed: frame}}`` for each of ``folds`` that has
    any (in the order of ``folds``)."""
    model_dir = Path(root) / model
    paths = [path.as_posix() for path in sorted(model_dir.rglob("seed*.parquet"))]
    files = layout(paths, Path(root).as_posix(), split).get(model, {})
    return read_frames({fold: files[fold] for fold in folds if fold in files})


def read_skipped(root: str | Path, model: str, folds: Sequence[str]) -> dict[str, dict]:
    """``{fold: skip record}`` of the ``folds`` on which ``model``'s stage skipped it."""
    records = {fold: read_skip(Path(root) / model / fold) for fold in folds}
    return {fold: record for fold, record in records.items() if record is not None}


def read_seeds(directory: str | Path) -> dict[int, pd.DataFrame]:
    """``{seed: frame}`` of the ``seed<k>.parquet`` files directly in ``directory`` (seeds
    ascending; empty when there are none)."""
    directory = Path(directory)
    paths = {seed_of(path.name): path for path in directory.glob("seed*.parquet")}
    return {seed: pd.read_parquet(paths[seed]) for seed in sorted(s for s in paths if s is not None)}


def seed_path(directory: str | Path, seed: int, split: str = "test") -> Path:
    """Where one seed's predictions of ``split`` go: ``directory/[dev/]seed<k>.parquet``.

    >>> seed_path("r/fusion/main", 2, "dev").as_posix()
    'r/fusion/main/dev/seed2.parquet'
    """
    if split not in SPLITS:
        raise ValueError(f"split {split!r}: expected one of {SPLITS}")
    directory = Path(directory)
    return (directory / DEV if split == DEV else directory) / f"seed{seed}.parquet"


def write(frame: pd.DataFrame, directory: str | Path, seed: int, split: str = "test") -> Path:
    """Write one seed's predictions at :func:`seed_path`; returns the path."""
    path = seed_path(directory, seed, split)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path, index=False)
    return path
