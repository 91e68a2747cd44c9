"""Released feature files in their exact formats, and a features-only CMU-MOSI root.

- :func:`write_csd`: a CMU-MultimodalSDK computational sequence as
  ``mmsdk.mmdatasdk.computational_sequence.file_ops.writeCSD`` writes it: one top-level group (the
  root name) with ``data/<entry>/features`` (T x D), ``data/<entry>/intervals`` (T x 2, seconds)
  and ``metadata/<key>``, each a ``(1,)`` variable-length string dataset.
- :func:`write_mmsa_pickle`: an MMSA processed pickle (``Processed/unaligned_50.pkl``): splits
  ``train`` / ``valid`` / ``test`` of zero-padded ``(N, L, D)`` arrays, ``text_bert`` ``(N, 3, L)``
  (ids, attention mask, segment ids), lengths, ``id`` as ``video$_$clip``, labels.
- :func:`build_features_only_mosi`: ``MOSI/label.csv`` (the MMSA columns, tests/fixtures_mmsa's
  videos and scores) and ``MOSI/Processed/unaligned_50.pkl``, no ``Raw/``: what a user with only
  the released features has. Its audio carries COVAREP-style ``-inf`` frames.
"""

from __future__ import annotations

import csv
import pickle
from pathlib import Path

import h5py
import numpy as np

from tests import fixtures_mmsa

SDK_METADATA = {
    "computational sequence description": "fixture sequence",
    "computational sequence version": "1.0",
    "alignment compatible": "True",
    "dataset name": "CMU-MOSI fixture",
    "dataset version": "1.0",
    "creator": "mer tests",
    "contact": "tests@mer.invalid",
    "featureset bib citation": "none",
    "dataset bib citation": "none",
}
DIMS = {"text": 6, "audio": 5, "video": 4}  # MMSA MOSI: 768 BERT, 5 COVAREP, 20 Facet (tiny here)
WIDTHS = {"text": 8, "audio": 12, "video": 10}  # padded lengths of the pickle's arrays
KEYS = {"text": "text", "audio": "audio", "video": "vision"}


def write_csd(path: Path, root_name: str, entries: dict[str, tuple[np.ndarray, np.ndarray]]) -> Path:
    """Write ``{entry: (features (T, D), intervals (T, 2))}`` as a computational sequence."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as handle:
        root = handle.create_group(root_name)
        data = root.create_group("data")
        for key, (features, intervals) in entries.items():
            group = data.create_group(key)
            group.create_dataset("features", data=features)
            group.create_dataset("intervals", data=intervals)
        metadata = root.create_group("metadata")
        for key, value in {"root name": root_name, **SDK_METADATA}.items():
            metadata.create_dataset(key, (1,), dtype=h5py.special_dtype(vlen=str))
            metadata[key][0] = value
    return path


def frames(count: int, dim: int, start: float = 0.0, step: float = 0.1, seed: int = 0) -> tuple:
    """``count`` frames of ``step`` seconds from ``start``: (features, intervals)."""
    features = np.random.default_rng(seed).normal(size=(count, dim))
    begins = start + step * np.arange(count)
    return features, np.stack([begins, begins + step], axis=1)


def mmsa_split(utterances: list[dict]) -> dict:
    """One split dict from ``[{"id", "text", "audio", "video", "label"}]`` (unpadded arrays)."""
    n = len(utterances)
    split: dict = {
        "id": np.array([u["id"] for u in utterances], dtype=object),
        "raw_text": np.array([f"words of {u['id']}" for u in utterances], dtype=object),
    }
    for modality, key in KEYS.items():
        padded = np.zeros((n, WIDTHS[modality], DIMS[modality]), dtype=np.float32)
        for i, u in enumerate(utterances):
            padded[i, : len(u[modality])] = u[modality]
        split[key] = padded
    bert = np.zeros((n, 3, WIDTHS["text"]), dtype=np.int64)
    for i, u in enumerate(utterances):
        bert[i, 0, : len(u["text"])] = 101 + np.arange(len(u["text"]))
        bert[i, 1, : len(u["text"])] = 1
    split["text_bert"] = bert
    split["audio_lengths"] = [u.get("audio_length", len(u["audio"])) for u in utterances]
    split["vision_lengths"] = [u.get("video_length", len(u["video"])) for u in utterances]
    labels = np.array([u["label"] for u in utterances], dtype=np.float32)
    split["regression_labels"] = labels
    split["classification_labels"] = (labels >= 0).astype(np.float32)
    split["annotations"] = np.array(["Positive" if x >= 0 else "Negative" for x in labels], dtype=object)
    return split


def write_mmsa_pickle(path: Path, splits: dict[str, list[dict]]) -> Path:
    """Write ``{"train" / "valid" / "test": [utterance dicts]}`` as MMSA's pickle."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        pickle.dump({name: mmsa_split(utterances) for name, utterances in splits.items()}, handle)
    return path


def utterance(mmsa_id: str, label: float, seed: int, lengths: tuple[int, int, int] = (5, 9, 7)) -> dict:
    """Random features whose mean follows the label, so a model has something to learn."""
    rng = np.random.default_rng(seed)
    item = {"id": mmsa_id, "label": label}
    for modality, length in zip(KEYS, lengths, strict=True):
        item[modality] = (rng.normal(size=(length, DIMS[modality])) + label).astype(np.float32)
    return item


def build_features_only_mosi(root: Path) -> tuple[Path, Path]:
    """``root/MOSI`` with label.csv and Processed/unaligned_50.pkl, no Raw/; returns (corpus root,
    pickle). Every clip has features; the audio of the first train clip has two ``-inf`` frames."""
    corpus = Path(root) / "MOSI"
    corpus.mkdir(parents=True, exist_ok=True)
    rows, splits = [], {"train": [], "valid": [], "test": []}
    seed = 0
    for split, videos in fixtures_mmsa.VIDEOS.items():
        mode = fixtures_mmsa.MODES[split]
        for v, video in enumerate(videos):
            for clip in (1, 2):
                label = fixtures_mmsa.SCORES[split][v + 6 * (clip - 1)]
                text = fixtures_mmsa.TEXTS[fixtures_mmsa.annotation(float(label))][(v + clip) % 3]
                rows.append(fixtures_mmsa._row(video, clip, text, label, mode))
                seed += 1
                lengths = (3 + seed % 4, 6 + seed % 5, 4 + seed % 6)
                splits[mode].append(utterance(f"{video}$_${clip}", float(label), seed, lengths))
    splits["train"][0]["audio"][[1, 3], 0] = -np.inf  # COVAREP's log energy of silent frames
    with (corpus / "label.csv").open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(fixtures_mmsa.HEADER)
        writer.writerows(rows)
    return corpus, write_mmsa_pickle(corpus / "Processed" / "unaligned_50.pkl", splits)
