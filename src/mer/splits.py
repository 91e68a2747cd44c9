"""Seeded, stratified, nested subsets of a split (few-shot fractions and k-shot)."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd


def _per_class_prefix(labels: pd.Series | np.ndarray, seed: int, count: Callable[[int], int]) -> list[int]:
    """Sorted positions: for each class (in label order) a seeded permutation of its members, of
    which the first ``count(class size)`` are kept. One permutation per class and seed, so
    subsets are nested in ``count``."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        chosen.extend(members[rng.permutation(len(members))][: count(len(members))].tolist())
    return sorted(chosen)


def kshot_positions(labels: pd.Series | np.ndarray, k: int, seed: int) -> list[int]:
    """Row positions of ``k`` utterances per present class (all of a class with fewer), nested
    in ``k`` for the same seed like :func:`stratified_positions`.

    >>> labels = np.array([0] * 10 + [1] * 10)
    >>> three, five = kshot_positions(labels, 3, 0), kshot_positions(labels, 5, 0)
    >>> len(three), set(three) <= set(five)
    (6, True)
    """
    if k < 1:
        raise ValueError(f"k must be >= 1 utterance per class, got {k}")
    return _per_class_prefix(labels, seed, lambda size: k)


def stratified_positions(labels: pd.Series | np.ndarray, percent: int, seed: int) -> list[int]:
    """Row positions of a stratified ``percent``% subset, at least one row per present class.

    Nested: for the same seed, the subset at a smaller percent is contained in the one at a
    larger percent (each class uses one fixed permutation and takes a prefix of it), so a
    few-shot curve differs only by added data.

    >>> labels = np.array([0] * 10 + [1] * 10)
    >>> small, large = stratified_positions(labels, 20, 0), stratified_positions(labels, 50, 0)
    >>> len(small), len(large), set(small) <= set(large)
    (4, 10, True)
    """
    if not 0 < percent <= 100:
        raise ValueError(f"percent must be in (0, 100], got {percent}")
    return _per_class_prefix(labels, seed, lambda size: max(1, math.ceil(size * percent / 100)))
