"""One seeding function for every stage that trains something."""

from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int) -> torch.Generator:
    """Seed python, numpy and torch; make torch deterministic; return a seeded generator.

    >>> a = torch.rand(2, generator=seed_everything(3)); b = torch.rand(2, generator=seed_everything(3))
    >>> bool((a == b).all())
    True
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    return torch.Generator().manual_seed(seed)
