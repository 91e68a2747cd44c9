"""Ragged sequence-feature shards: one writer, one memory-mapped reader, one verifier.

A feature directory (``data/features/<corpus>/<modality>/``) holds

- ``shard-00000.npy``: float16 ``(sum of lengths, D)``, every utterance's hidden states back to
  back, no padding; memory-mapped by the reader.
- ``shard-00000.json``: the shard's manifest: utt_ids, offsets (utterance ``i`` is
  ``hidden[offsets[i]:offsets[i+1]]``), the data file's sha256, the fingerprint of what produced
  it, and the utterances quarantined in it. Written last, atomically: a shard whose manifest is
  present, whose fingerprint matches and whose checksum verifies is complete, so a killed
  extraction resumes without redoing it.
- ``meta.json`` (encoder, weights origin, dims, dtype, counts, shards), ``quarantine.csv``
  (utt_id, reason) and ``verify.json`` (the verification record).

Legend for shape comments in this package: B batch, L/T sequence length, D feature dim.

>>> import tempfile, numpy as np
>>> out = Path(tempfile.mkdtemp())
>>> manifest = write_shard(out, 0, ["a", "b"], [np.ones((3, 2)), np.zeros((1, 2))], [], "fp")
>>> store = FeatureStore(out, meta={"hidden_dim": 2, "shards": [manifest]})
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

import numpy as np
import torch

from mer.files import write_json
from mer.skips import refuse_skipped

logger = logging.getLogger(__name__)

DTYPE = np.float16


def sha256(path: str | Path) -> str:
    """Hex sha256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def shard_name(index: int) -> str:
    """``shard-00007`` for index 7."""
    return f"shard-{index:05d}"


#: ``meta.json``'s ``layout``: how the shards hold the utterances
LAYOUT = "ragged: shard .npy rows offsets[i]:offsets[i+1] per utterance (see the shard .json)"


def shard_entries(manifests: Sequence[dict]) -> list[dict]:
    """``meta.json``'s ``shards`` list from the shards' manifests (as :func:`write_shard` returns
    them): each shard's file, manifest name, utterance count and sha256."""
    return [_shard_entry(m) for m in manifests]


def _shard_entry(manifest: dict) -> dict:
    return {
        "file": manifest["file"],
        "manifest": f"{shard_name(manifest['index'])}.json",
        "count": manifest["count"],
        "sha256": manifest["sha256"],
    }


def write_shard(
    out_dir: str | Path,
    index: int,
    utt_ids: Sequence[str],
    arrays: Sequence[np.ndarray],
    quarantined: Sequence[dict],
    fingerprint: str,
    hidden_dim: int | None = None,
    counts: dict[str, int] | None = None,
) -> dict:
    """Write one complete shard atomically (data first, manifest last) and return its manifest.

    ``arrays`` are the utterances' ``(L_i, D)`` hidden states, stored as float16; ``counts``
    (e.g. resampled / truncated clips) are kept in the manifest.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = shard_name(index)
    dim = hidden_dim if hidden_dim is not None else (arrays[0].shape[1] if len(arrays) else 0)
    for utt_id, array in zip(utt_ids, arrays, strict=True):
        if array.ndim != 2 or array.shape[1] != dim or not len(array):
            raise ValueError(f"{utt_id}: expected hidden states of shape (L>=1, {dim}), got {array.shape}")
    lengths = np.array([len(a) for a in arrays], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).tolist()
    hidden = np.concatenate(arrays).astype(DTYPE) if len(arrays) else np.zeros((0, dim), dtype=DTYPE)
    tmp = out_dir / f"{name}.npy.tmp"
    with open(tmp, "wb") as handle:
        np.save(handle, hidden)
    os.replace(tmp, out_dir / f"{name}.npy")
    manifest = {
        "file": f"{name}.npy",
        "index": index,
        "count": len(utt_ids),
        "utt_ids": list(utt_ids),
        "offsets": offsets,
        "sha256": sha256(out_dir / f"{name}.npy"),
        "fingerprint": fingerprint,
        "quarantined": list(quarantined),
        "counts": dict(counts or {}),
    }
    write_json(out_dir / f"{name}.json", manifest)
    return manifest


def complete_shard(out_dir: str | Path, index: int, fingerprint: str) -> dict | None:
    """The manifest of shard ``index`` if it is complete and was made by ``fingerprint``."""
    out_dir = Path(out_dir)
    manifest_path = out_dir / f"{shard_name(index)}.json"
    if not manifest_path.is_file():
        return None
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError:
        return None
    data = out_dir / manifest.get("file", "")
    if manifest.get("fingerprint") != fingerprint or not data.is_file():
        return None
    if sha256(data) != manifest["sha256"]:
        logger.warning("%s: checksum mismatch, recomputing the shard", data)
        return None
    return manifest


class FeatureStore:
    """Memory-mapped reader: ``store[utt_id]`` is a float16 ``(L, D)`` view into its shard.

    Only the manifests are read up front; shard data is mapped on first access, so a corpus is
    never loaded into RAM as a whole.
    """

    def __init__(self, feature_dir: str | Path, meta: dict | None = None) -> None:
        self.dir = Path(feature_dir)
        if meta is None:
            refuse_skipped(self.dir, f"{self.dir.name} features")  # e.g. not in model.modalities
            meta_path = self.dir / "meta.json"
            if not meta_path.is_file():
                raise FileNotFoundError(
                    f"{meta_path}: feature meta not found; run `dvc repro` for the extract stage"
                )
            meta = json.loads(meta_path.read_text())
        self.meta = meta
        self.hidden_dim = int(meta["hidden_dim"])
        self._index: dict[str, tuple[str, int, int]] = {}
        self._maps: dict[str, np.ndarray] = {}
        for shard in meta["shards"]:
            if "utt_ids" not in shard:  # meta.json lists shards; ids and offsets live in manifests
                shard = json.loads((self.dir / shard["manifest"]).read_text())
            offsets = shard["offsets"]
            for i, utt_id in enumerate(shard["utt_ids"]):
                self._index[utt_id] = (shard["file"], offsets[i], offsets[i + 1])

    def _map(self, file: str) -> np.ndarray:
        if file not in self._maps:
            self._maps[file] = np.load(self.dir / file, mmap_mode="r")
        return self._maps[file]

    @property
    def ids(self) -> list[str]:
        return list(self._index)

    def __contains__(self, utt_id: str) -> bool:
        return utt_id in self._index

    def __getitem__(self, utt_id: str) -> np.ndarray:
        file, start, end = self._index[utt_id]
        return self._map(file)[start:end]

    def __len__(self) -> int:
        return len(self._index)


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
