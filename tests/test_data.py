"""Packed sequences: batches equal padding each batch anew; subsets and modality selections are
views into one packing; the alignment batch is the subset batch it replaced."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mer.data import Batch, MultimodalData, PackedSequences
from mer.features import pad_sequences
from tests.conftest import make_sequences, make_table


def _expected(data: MultimodalData, index: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """What the loop fed the model before packing: each batch's arrays padded anew."""
    return {m: pad_sequences([seqs[i] for i in index.tolist()]) for m, seqs in data.sequences.items()}


def _assert_batch_equals(batch: Batch, data: MultimodalData, index: torch.Tensor) -> None:
    for modality, (hidden_states, mask) in _expected(data, index).items():
        assert batch.features[modality].dtype == torch.float32
        assert torch.equal(batch.features[modality], hidden_states), modality  # bit for bit
        assert torch.equal(batch.masks[modality], mask), modality
    assert torch.equal(batch.labels, data.labels[index]) and torch.equal(batch.index, index)
    torch.testing.assert_close(batch.vad, data.vad[index], rtol=0, atol=0, equal_nan=True)
    torch.testing.assert_close(batch.sentiment, data.sentiment[index], rtol=0, atol=0, equal_nan=True)


@pytest.fixture
def ragged():
    """float16 text (as the feature stores hold it) and float64 audio (converted like pad_sequences)."""
    table = make_table(5)
    sequences = make_sequences(table, {"text": 6, "audio": 4})
    sequences["audio"] = [s.astype(np.float64) * np.pi for s in sequences["audio"]]
    return MultimodalData.from_arrays(table, sequences)


@pytest.mark.parametrize(("rank", "world_size"), [(0, 1), (1, 2)])
def test_shuffled_batches_equal_padding_each_batch_anew(ragged, rank, world_size):
    batches = list(ragged.batches(6, True, torch.Generator().manual_seed(3), rank, world_size))
    order = torch.randperm(len(ragged), generator=torch.Generator().manual_seed(3))  # the same draw
    assert len(batches) == 4
    for start, batch in zip(range(0, len(ragged), 6), batches, strict=True):
        _assert_batch_equals(batch, ragged, order[start : start + 6][rank::world_size])


def test_packing_keeps_float16_and_pads_with_zero_rows():
    arrays = [np.full((3, 2), 1.5, np.float16), np.full((1, 2), -2.0, np.float16)]
    packed = PackedSequences.from_arrays(arrays)
    assert packed.frames.dtype == torch.float16 and packed.frames.shape == (5, 2)
    assert packed.offsets.tolist() == [0, 3] and packed.lengths.tolist() == [3, 1]
    hidden_states, mask = packed.pad(torch.tensor([1, 1, 0]))
    assert hidden_states.dtype == torch.float32
    assert hidden_states[:, :, 0].tolist() == [[-2.0, 0, 0], [-2.0, 0, 0], [1.5, 1.5, 1.5]]
    assert mask.sum(1).tolist() == [1, 1, 3]


def test_subset_is_a_view_equal_to_a_subset_built_from_scratch(ragged):
    ragged.pack()
    positions = [7, 3, 3, 19, 0]  # any order, repeats allowed
    view = ragged.subset(positions)
    scratch = MultimodalData(
        ragged.table.iloc[positions], {m: [s[i] for i in positions] for m, s in ragged.sequences.items()}
    )
    assert view._packed is ragged._packed  # shares the packed frames: nothing copied
    assert view.table.equals(scratch.table) and torch.equal(view.labels, scratch.labels)
    generator_a, generator_b = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    for mine, theirs in zip(
        view.batches(2, True, generator_a), scratch.batches(2, True, generator_b), strict=True
    ):
        assert torch.equal(mine.index, theirs.index)
        for modality in ragged.modalities:
            assert torch.equal(mine.features[modality], theirs.features[modality])
            assert torch.equal(mine.masks[modality], theirs.masks[modality])
    nested = view.subset([4, 0])  # a subset of a view is a view into the same packing
    _assert_batch_equals(nested.batch(torch.arange(2)), nested, torch.arange(2))
    direct = ragged.batch(torch.tensor([0, 7]))  # rows 4 and 0 of the view are rows 0 and 7
    assert torch.equal(nested.batch(torch.arange(2)).features["audio"], direct.features["audio"])


def test_only_and_map_keep_or_rebuild_the_packing(ragged):
    ragged.pack()
    audio = ragged.only(["audio"])
    assert audio.modalities == ["audio"] and audio._packed["audio"] is ragged._packed["audio"]
    _assert_batch_equals(audio.batch(torch.tensor([2, 5])), audio, torch.tensor([2, 5]))
    doubled = ragged.map("audio", lambda s: 2 * s)  # new sequences: packed anew, not the stale frames
    batch = doubled.batch(torch.tensor([2, 5]))
    _assert_batch_equals(batch, doubled, torch.tensor([2, 5]))
    assert torch.equal(batch.features["audio"], 2 * ragged.batch(torch.tensor([2, 5])).features["audio"])


def test_alignment_batch_equals_the_subset_batch_it_replaced(ragged):
    index = torch.randint(len(ragged), (8,), generator=torch.Generator().manual_seed(0))
    landed = next(ragged.subset(index.tolist()).batches(len(index)))  # Alignment's former path
    batch = ragged.batch(index)
    for modality in ragged.modalities:
        assert torch.equal(batch.features[modality], landed.features[modality])
        assert torch.equal(batch.masks[modality], landed.masks[modality])
    assert torch.equal(batch.labels, landed.labels)
