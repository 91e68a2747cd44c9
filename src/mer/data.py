"""Multimodal training data: metadata rows joined with their per-modality feature sequences.

>>> import pandas as pd
>>> table = pd.DataFrame({"utt_id": ["a", "b"], "label_id": [0, 1]})
>>> data = MultimodalData.from_arrays(table, {"text": [np.ones((2, 3)), np.ones((4, 3))]})
>>> batch = next(data.batches(batch_size=2))
>>> tuple(batch.features["text"].shape), batch.labels.tolist()
((2, 4, 3), [0, 1])
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from mer import protocols, schema
from mer.features import FeatureStore, pad_sequences

logger = logging.getLogger(__name__)


@dataclass
class Batch:
    """One padded batch.

    Attributes:
        features (dict of `FloatTensor` `(B, L_m, D_m)`), masks (dict of `BoolTensor` `(B, L_m)`),
        labels (`LongTensor` `(B,)`), index (`LongTensor` `(B,)`: row positions in the data),
        vad (`FloatTensor` `(B, 3)`: valence / arousal / dominance scaled to [-1, 1], NaN where
        unknown), sentiment (`FloatTensor` `(B,)`: score in [-3, 3], NaN where unknown).
    """

    features: dict[str, torch.Tensor]
    masks: dict[str, torch.Tensor]
    labels: torch.Tensor
    index: torch.Tensor
    vad: torch.Tensor
    sentiment: torch.Tensor

    def to(self, device: torch.device | str) -> Batch:
        """The batch on ``device``."""
        return Batch(
            features={m: f.to(device) for m, f in self.features.items()},
            masks={m: k.to(device) for m, k in self.masks.items()},
            labels=self.labels.to(device), index=self.index, vad=self.vad.to(device),
            sentiment=self.sentiment.to(device),
        )  # fmt: skip


VAD_COLUMNS = ("valence", "arousal", "dominance")


def _float_column(table: pd.DataFrame, column: str) -> np.ndarray:
    if column not in table:
        return np.full(len(table), np.nan)
    return pd.to_numeric(table[column], errors="coerce").to_numpy(dtype=np.float64)


class MultimodalData:
    """Rows of a metadata table with their feature sequences, one list per modality."""

    def __init__(
        self, table: pd.DataFrame, sequences: dict[str, list[np.ndarray]], n_missing: int = 0
    ) -> None:
        self.table = table.reset_index(drop=True)
        self.table.attrs = dict(table.attrs)
        self.sequences = sequences
        self.n_missing = n_missing
        self.labels = torch.tensor(self.table["label_id"].to_numpy(), dtype=torch.long)
        # VAD on IEMOCAP's 1-5 annotation scale -> [-1, 1], so the auxiliary MSE is O(1)
        vad = np.stack([_float_column(self.table, c) for c in VAD_COLUMNS], axis=-1).reshape(-1, 3)
        self.vad = torch.tensor((vad - 3.0) / 2.0, dtype=torch.float32).reshape(-1, 3)
        self.sentiment = torch.tensor(_float_column(self.table, "sentiment"), dtype=torch.float32)

    @classmethod
    def from_arrays(cls, table: pd.DataFrame, sequences: dict[str, list[np.ndarray]]) -> MultimodalData:
        return cls(table, {m: list(s) for m, s in sequences.items()})

    @classmethod
    def load(
        cls, table: pd.DataFrame, stores: dict[str, FeatureStore | str | Path], name: str = "data"
    ) -> MultimodalData:
        """Join ``table`` with the feature stores; rows missing from any store (quarantined at
        extraction) are excluded, counted in ``n_missing`` and logged with their ids."""
        stores = {m: s if isinstance(s, FeatureStore) else FeatureStore(s) for m, s in stores.items()}
        present = np.ones(len(table), dtype=bool)
        for store in stores.values():
            present &= table["utt_id"].isin(store.ids).to_numpy()
        if not present.all():
            dropped = table.loc[~present, "utt_id"].tolist()
            logger.warning(
                "%s: %d utterances lack features (quarantined): %s", name, len(dropped), dropped[:10]
            )
        kept = table.loc[present].reset_index(drop=True)
        sequences = {m: [store[u] for u in kept["utt_id"]] for m, store in stores.items()}
        return cls(kept, sequences, n_missing=int((~present).sum()))

    def __len__(self) -> int:
        return len(self.table)

    @property
    def classes(self) -> tuple[str, ...]:
        """Class names in ``label_id`` order (from the metadata table, see ``mer.schema``)."""
        return schema.label_classes(self.table)

    @property
    def modalities(self) -> list[str]:
        return list(self.sequences)

    def dims(self) -> dict[str, int]:
        """Feature dim of each modality."""
        return {m: int(seqs[0].shape[1]) for m, seqs in self.sequences.items()}

    def only(self, modalities: Sequence[str]) -> MultimodalData:
        """The same rows with only ``modalities``' sequences."""
        return MultimodalData(self.table, {m: self.sequences[m] for m in modalities}, self.n_missing)

    def frame_statistics(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Per-dimension mean and std over every frame / token of each modality: `(D,)` each."""
        statistics = {}
        for modality, seqs in self.sequences.items():
            # streamed sums: the (memory-mapped) sequences are never concatenated in RAM
            count, total, squares = 0, 0.0, 0.0
            for sequence in seqs:
                frames = np.asarray(sequence, dtype=np.float64)  # (L, D)
                count += len(frames)
                total = total + frames.sum(0)
                squares = squares + (frames**2).sum(0)
            mean = total / count
            variance = np.maximum(squares / count - mean**2, 0.0) * count / max(count - 1, 1)
            statistics[modality] = (
                torch.from_numpy(mean).float(),
                torch.from_numpy(np.sqrt(variance)).float(),
            )
        return statistics

    def subset(self, positions: Sequence[int]) -> MultimodalData:
        """The rows at ``positions`` (in that order)."""
        positions = list(positions)
        return MultimodalData(
            self.table.iloc[positions],
            {m: [seqs[i] for i in positions] for m, seqs in self.sequences.items()},
        )

    def map(self, modality: str, transform: Callable[[np.ndarray], np.ndarray]) -> MultimodalData:
        """A copy whose ``modality`` sequences are ``transform(sequence)`` (e.g. an adapter)."""
        sequences = dict(self.sequences)
        sequences[modality] = [transform(s) for s in self.sequences[modality]]
        return MultimodalData(self.table, sequences, self.n_missing)

    def batches(
        self,
        batch_size: int,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> Iterator[Batch]:
        """Padded batches (padding only up to each batch's longest item).

        With ``world_size`` > 1 (data-parallel training) every rank draws the same order and
        keeps items ``rank::world_size`` of each global batch of ``batch_size``.
        """
        order = torch.randperm(len(self), generator=generator) if shuffle else torch.arange(len(self))
        for start in range(0, len(self), batch_size):
            index = order[start : start + batch_size][rank::world_size]
            if len(index) == 0:
                continue
            features, masks = {}, {}
            for modality, seqs in self.sequences.items():
                features[modality], masks[modality] = pad_sequences([seqs[i] for i in index.tolist()])
            yield Batch(
                features=features, masks=masks, labels=self.labels[index], index=index,
                vad=self.vad[index], sentiment=self.sentiment[index],
            )  # fmt: skip


def load_splits(
    metadata_path: str | Path,
    feature_root: str | Path,
    modalities: Sequence[str],
    fold: str | int | None = None,
    splits_path: str | Path | None = None,
) -> dict[str, MultimodalData]:
    """The train / dev / test data of one corpus, reading ``feature_root/<modality>`` stores.

    With ``fold`` the splits come from that fold of the split file ``splits_path`` (e.g. an
    IEMOCAP leave-one-session-out fold) instead of the table's ``split`` column.
    """
    table = schema.read(metadata_path)
    if fold is not None:
        if splits_path is None:
            raise ValueError(f"fold {fold!r} needs the split file (splits_path)")
        splits_table = pd.read_csv(splits_path, dtype={"utt_id": str, "fold": str, "split": str})
        table = protocols.apply_fold(table, splits_table, fold, source=str(splits_path))
    stores = {m: FeatureStore(Path(feature_root) / m) for m in modalities}
    splits = {
        split: MultimodalData.load(table[table["split"] == split], stores, name=f"{metadata_path}:{split}")
        for split in ("train", "dev", "test")
    }
    empty = [name for name, data in splits.items() if len(data) == 0]
    if empty:
        raise ValueError(
            f"{metadata_path}: split(s) {empty} have no utterance with features in all of "
            f"{list(modalities)} (n per split: { {n: len(d) for n, d in splits.items()} }); "
            "check the metadata splits and the extract stage's quarantine.csv"
        )
    return splits
