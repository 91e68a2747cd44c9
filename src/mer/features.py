"""Ragged sequence-feature shards: one writer, one reader, one verifier.

A feature directory (``data/features/<corpus>/<modality>/``) holds

- ``shard-00000.npz`` ... : ``hidden`` float16 ``(sum of lengths, d)``, ``offsets`` int64
  ``(n + 1,)`` and ``utt_ids`` ``(n,)``; utterance ``i`` is ``hidden[offsets[i]:offsets[i+1]]``.
  No padding is stored.
- ``meta.json``: encoder, weights origin, config hash, dims, dtype, counts, shard checksums.
- ``verify.json``: the verification record (shapes, finiteness, ids aligned with metadata,
  quarantined utterances with reasons).

Legend for shape comments in this package: B batch, L/T sequence length, D feature dim.

>>> import tempfile, numpy as np
>>> out = Path(tempfile.mkdtemp())
>>> with ShardWriter(out, hidden_dim=2, shard_size=2) as writer:
...     writer.add("a", np.ones((3, 2))); writer.add("b", np.zeros((1, 2)))
>>> store = FeatureStore(out, meta={"hidden_dim": 2, "shards": writer.shards})
>>> store["a"].shape, store.ids
((3, 2), ['a', 'b'])
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

logger = logging.getLogger(__name__)

DTYPE = np.float16


def sha256(path: str | Path) -> str:
    """Hex sha256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_json(path: str | Path, payload: Any) -> Path:
    """Write JSON atomically (temp file + rename), sorted keys, trailing newline."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
    return path


class ShardWriter:
    """Buffer per-utterance ``(L, D)`` arrays and write them as float16 shards, atomically."""

    def __init__(self, out_dir: str | Path, hidden_dim: int, shard_size: int) -> None:
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.hidden_dim = hidden_dim
        self.shard_size = shard_size
        self.shards: list[dict] = []
        self._ids: list[str] = []
        self._arrays: list[np.ndarray] = []

    def add(self, utt_id: str, hidden_states: np.ndarray) -> None:
        """Queue one utterance's hidden states, shape ``(L, D)`` with ``L >= 1``."""
        if hidden_states.ndim != 2 or hidden_states.shape[1] != self.hidden_dim or not len(hidden_states):
            raise ValueError(
                f"{utt_id}: expected hidden states of shape (L>=1, {self.hidden_dim}), "
                f"got {tuple(hidden_states.shape)}"
            )
        self._ids.append(utt_id)
        self._arrays.append(hidden_states.astype(DTYPE))
        if len(self._ids) >= self.shard_size:
            self.flush()

    def flush(self) -> None:
        """Write the buffered utterances as the next shard (temp file, then rename)."""
        if not self._ids:
            return
        name = f"shard-{len(self.shards):05d}.npz"
        lengths = np.array([len(a) for a in self._arrays], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        tmp = self.out_dir / (name + ".tmp")
        with open(tmp, "wb") as handle:
            np.savez(handle, hidden=np.concatenate(self._arrays), offsets=offsets,
                     utt_ids=np.array(self._ids))  # fmt: skip
        os.replace(tmp, self.out_dir / name)
        self.shards.append({"file": name, "count": len(self._ids), "sha256": sha256(self.out_dir / name)})
        self._ids, self._arrays = [], []

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self.flush()


class FeatureStore:
    """Read a feature directory: ``store[utt_id]`` gives the float16 ``(L, D)`` array."""

    def __init__(self, feature_dir: str | Path, meta: dict | None = None) -> None:
        self.dir = Path(feature_dir)
        if meta is None:
            meta_path = self.dir / "meta.json"
            if not meta_path.is_file():
                raise FileNotFoundError(
                    f"{meta_path}: feature meta not found; run `dvc repro` for the extract stage"
                )
            meta = json.loads(meta_path.read_text())
        self.meta = meta
        self.hidden_dim = int(meta["hidden_dim"])
        self._arrays: dict[str, np.ndarray] = {}
        for shard in meta["shards"]:
            with np.load(self.dir / shard["file"]) as data:
                hidden, offsets = data["hidden"], data["offsets"]
                for i, utt_id in enumerate(data["utt_ids"].tolist()):
                    self._arrays[utt_id] = hidden[offsets[i] : offsets[i + 1]]

    @property
    def ids(self) -> list[str]:
        return list(self._arrays)

    def __contains__(self, utt_id: str) -> bool:
        return utt_id in self._arrays

    def __getitem__(self, utt_id: str) -> np.ndarray:
        return self._arrays[utt_id]

    def __len__(self) -> int:
        return len(self._arrays)


def pad_sequences(arrays: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack ragged ``(L_i, D)`` arrays into a zero-padded float32 batch and its mask.

    Returns:
        hidden_states (`FloatTensor` of shape `(B, L_max, D)`) and mask (`BoolTensor` of shape
        `(B, L_max)`, True on real positions).

    >>> h, m = pad_sequences([np.ones((2, 3)), np.ones((1, 3))])
    >>> tuple(h.shape), m.tolist()
    ((2, 2, 3), [[True, True], [True, False]])
    """
    lengths = [len(a) for a in arrays]
    dim = arrays[0].shape[1]
    hidden_states = torch.zeros(len(arrays), max(lengths), dim)  # (B, L, D)
    mask = torch.zeros(len(arrays), max(lengths), dtype=torch.bool)  # (B, L)
    for i, array in enumerate(arrays):
        hidden_states[i, : lengths[i]] = torch.from_numpy(np.asarray(array, dtype=np.float32))
        mask[i, : lengths[i]] = True
    return hidden_states, mask


def verify(feature_dir: str | Path, expected_ids: Sequence[str], quarantined: Sequence[dict]) -> dict:
    """Re-read the written shards and check them against the metadata ids.

    Checks: every shard's checksum, every array ``(L >= 1, hidden_dim)`` and finite, and the stored
    ids equal the expected ids minus the quarantined ones, in metadata order.
    """
    feature_dir = Path(feature_dir)
    meta = json.loads((feature_dir / "meta.json").read_text())
    problems: list[str] = []
    for shard in meta["shards"]:
        if sha256(feature_dir / shard["file"]) != shard["sha256"]:
            problems.append(f"{shard['file']}: checksum mismatch")
    store = FeatureStore(feature_dir, meta)
    lengths = []
    for utt_id in store.ids:
        array = store[utt_id]
        if array.ndim != 2 or array.shape[1] != store.hidden_dim or len(array) == 0:
            problems.append(f"{utt_id}: bad shape {tuple(array.shape)}")
        elif not np.isfinite(array).all():
            problems.append(f"{utt_id}: NaN/Inf values")
        lengths.append(len(array))
    skipped = {q["utt_id"] for q in quarantined}
    wanted = [u for u in expected_ids if u not in skipped]
    aligned = store.ids == wanted
    if not aligned:
        missing = sorted(set(wanted) - set(store.ids))
        extra = sorted(set(store.ids) - set(wanted))
        problems.append(f"ids not aligned with metadata (missing {missing[:5]}, unexpected {extra[:5]})")
    return {
        "ok": not problems,
        "problems": problems[:50],
        "n_expected": len(expected_ids),
        "n_stored": len(store),
        "n_quarantined": len(quarantined),
        "quarantined": list(quarantined),
        "ids_aligned": aligned,
        "hidden_dim": store.hidden_dim,
        "length_min": int(min(lengths)) if lengths else 0,
        "length_mean": round(float(np.mean(lengths)), 2) if lengths else 0.0,
        "length_max": int(max(lengths)) if lengths else 0,
    }
