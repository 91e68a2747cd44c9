"""Shared fixtures: tiny random feature sets, offline hub settings."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def make_table(n_per_class: int = 6, splits: tuple[str, ...] = ("train",)) -> pd.DataFrame:
    """A minimal metadata-like table with balanced labels."""
    rows = []
    for split in splits:
        for label in range(4):
            for i in range(n_per_class):
                rows.append({"utt_id": f"{split}_{label}_{i}", "label_id": label, "split": split,
                             "speaker": f"{split}_spk"})  # fmt: skip
    return pd.DataFrame(rows)


def make_sequences(table: pd.DataFrame, dims: dict[str, int], seed: int = 0, signal: float = 2.0) -> dict:
    """Random ragged sequences whose mean carries the label (so a model can learn it).

    The label centres depend only on the modality; ``seed`` draws the noise."""
    rng = np.random.default_rng(seed)
    sequences = {}
    for index, (modality, dim) in enumerate(dims.items()):
        centers = np.random.default_rng(1000 + index).normal(size=(4, dim)) * signal
        sequences[modality] = [
            (rng.normal(size=(int(rng.integers(2, 7)), dim)) + centers[label]).astype(np.float16)
            for label in table["label_id"]
        ]
    return sequences


def write_feature_corpus(root, name: str, dims: dict[str, int], seed: int) -> None:
    """A tiny on-disk corpus: ``root/<name>.parquet`` (train / dev / test) and one float16
    feature store per modality under ``root/<name>/``."""
    from mer import features, schema
    from mer.files import write_json
    from mer.vocab import EMOTIONS

    table = make_table(6, ("train", "dev", "test"))
    table["utt_id"] = name + "_" + table["utt_id"]
    table["label"] = [EMOTIONS[i] for i in table["label_id"]]
    for column in schema.COLUMNS:
        if column not in table:
            table[column] = None
    schema.write(table, root / f"{name}.parquet")
    for modality, sequences in make_sequences(table, dims, seed=seed).items():
        manifest = features.write_shard(
            root / name / modality, 0, table["utt_id"].tolist(), sequences, [], "fp"
        )
        write_json(root / name / modality / "meta.json", {"hidden_dim": dims[modality], "shards": [manifest]})


@pytest.fixture
def tiny_data():
    """Train/dev/test MultimodalData with learnable random features in three modalities."""
    from mer.data import MultimodalData

    dims = {"text": 12, "audio": 10, "video": 8}
    out = {}
    for seed, split in enumerate(("train", "dev", "test")):
        table = make_table(8 if split == "train" else 4, (split,))
        out[split] = MultimodalData.from_arrays(table, make_sequences(table, dims, seed=seed))
    return out


@pytest.fixture(scope="session")
def reproduced_repo(tmp_path_factory):
    """A tiny-config copy of the repo after one full ``dvc repro``, committed (built once).

    Tests that change it must work on ``pipeline_utils.copy_repo(reproduced_repo, ...)``.
    """
    import yaml

    from tests.pipeline_utils import make_tiny_repo, ran_stages, run

    root = make_tiny_repo(tmp_path_factory.mktemp("tiny") / "repo")
    output = run(["dvc", "repro"], root)
    params = yaml.safe_load((root / "params.yaml").read_text())
    expected = {
        "metadata",
        "extract_swap",
        "adapt",
        "train@main",
        "transfer",
        "robustness",
        "evaluate",
        "report",
    }
    expected |= {f"baseline@{m}-main" for m in params["train"]["baselines"]}
    expected |= {f"ablation@{v}-main" for v in params["ablation"]["variants"]}
    expected |= {f"extract@{c}-{m}" for c in ("source", "target") for m in ("text", "audio", "video")}
    assert ran_stages(output) == expected, output[-3000:]
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-qm", "repro"], root)
    return root
