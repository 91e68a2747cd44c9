"""Multimodal training data: metadata rows joined with their per-modality feature sequences.

Batches are cut from each modality's packed sequences (:class:`PackedSequences`: every row's
frames back to back in one tensor, built once per data and shared by its subsets), padded only
up to each batch's longest item; the values equal padding each batch's arrays anew
(:func:`mer.features.pad_sequences`), without re-reading or re-converting them every epoch.

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
from mer.features import FeatureStore

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PackedSequences:
    """One modality's ragged sequences back to back in one tensor; a batch is gathered by row.

    Attributes:
        frames (`Tensor` of shape `(sum_i L_i + 1, D)`): the sequences' frames in row order,
            float16 when every sequence is (the feature stores' dtype; converted per batch), else
            float32; the last row is zeros, the value of every padded position.
        offsets (`LongTensor` `(N,)`): each row's first frame in ``frames``.
        lengths (`LongTensor` `(N,)`): each row's sequence length.

    Packed rather than padded to the split's longest sequence: memory stays the size of the
    features themselves however long the longest utterance is.

    >>> packed = PackedSequences.from_arrays([np.ones((2, 3)), 2 * np.ones((1, 3))])
    >>> hidden_states, mask = packed.pad(torch.tensor([1, 0]))
    >>> hidden_states[:, :, 0].tolist(), mask.tolist()
    ([[2.0, 0.0], [1.0, 1.0]], [[True, False], [True, True]])
    """

    frames: torch.Tensor
    offsets: torch.Tensor
    lengths: torch.Tensor

    @classmethod
    def from_arrays(cls, arrays: Sequence[np.ndarray]) -> PackedSequences:
        """Pack ragged ``(L_i, D)`` arrays (copied once, e.g. out of memory-mapped shards)."""
        dim = arrays[0].shape[1] if len(arrays) else 0
        # float16 stays float16 (half the memory); anything else becomes float32 here exactly as
        # pad_sequences converts it
        dtype = np.float16 if all(a.dtype == np.float16 for a in arrays) else np.float32
        frames = np.concatenate([np.asarray(a, dtype=dtype) for a in arrays] + [np.zeros((1, dim), dtype)])
        lengths = torch.tensor([len(a) for a in arrays], dtype=torch.long)
        offsets = torch.cumsum(lengths, 0) - lengths
        return cls(frames=torch.from_numpy(frames), offsets=offsets, lengths=lengths)

    def pad(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The sequences of ``rows`` (`LongTensor` `(B,)`), zero-padded to their longest.

        Returns:
            hidden_states (`FloatTensor` of shape `(B, L_max, D)`) and mask (`BoolTensor` of
            shape `(B, L_max)`, True on real positions), equal to ``pad_sequences`` of the rows'
            arrays.
        """
        lengths = self.lengths[rows]  # (B,)
        steps = torch.arange(int(lengths.max()) if len(rows) else 0)  # (L,)
        mask = steps < lengths[:, None]  # (B, L)
        padding_row = len(self.frames) - 1
        positions = torch.where(mask, self.offsets[rows, None] + steps, padding_row)  # (B, L)
        return self.frames[positions].float(), mask  # (B, L, D), (B, L)


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
        # packed sequences (shared with subsets) and this data's rows in them, see pack()
        self._packed: dict[str, PackedSequences] | None = None
        self._rows: torch.Tensor | None = None
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
        """The same rows with only ``modalities``' sequences (sharing their packing, if any)."""
        kept = MultimodalData(self.table, {m: self.sequences[m] for m in modalities}, self.n_missing)
        if self._packed is not None:
            kept._packed, kept._rows = {m: self._packed[m] for m in modalities}, self._rows
        return kept

    def pack(self) -> MultimodalData:
        """Pack every modality's sequences now (else on the first batch) and return ``self``.

        Subsets taken afterwards are views into this packing: a stage packs each split once and
        every run's subset and batch comes from it.
        """
        if self._packed is None:
            self._packed = {m: PackedSequences.from_arrays(s) for m, s in self.sequences.items()}
            self._rows = torch.arange(len(self))
        return self

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
        """The rows at ``positions`` (in that order); a view into this data's packing, if packed."""
        positions = list(positions)
        subset = MultimodalData(
            self.table.iloc[positions],
            {m: [seqs[i] for i in positions] for m, seqs in self.sequences.items()},
        )
        if self._packed is not None:
            subset._packed, subset._rows = self._packed, self._rows[positions]
        return subset

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
            yield self.batch(index)

    def batch(self, index: torch.Tensor) -> Batch:
        """One padded batch of the rows at ``index`` (`LongTensor` `(B,)`), in that order."""
        self.pack()
        rows = self._rows[index]  # (B,) rows of the packed sequences
        features, masks = {}, {}
        for modality, packed in self._packed.items():
            features[modality], masks[modality] = packed.pad(rows)  # (B, L_m, D_m), (B, L_m)
        return Batch(
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
