"""Domain alignment during fine-tuning: an extra loss between the fused embeddings of a
source-train batch and an (unlabelled) target-train batch, added to every training step of
:func:`mer.train.fit` (seed 003's DANN, MMD and CORAL).

>>> import numpy as np, pandas as pd
>>> table = pd.DataFrame({"utt_id": ["a", "b", "c"], "label_id": [0, 1, 2]})
>>> data = MultimodalData.from_arrays(table, {"text": [np.ones((2, 4))] * 3})
>>> alignment = Alignment("mmd", 0.5, data, data)
>>> alignment.method, alignment.weight
('mmd', 0.5)
"""

from __future__ import annotations

import torch
from torch import nn

from mer.data import MultimodalData
from mer.models.domain import DomainClassifier, coral_loss, dann_loss, mmd_loss

METHODS = ("dann", "mmd", "coral")


class Alignment:
    """``weight`` x the ``method`` loss between source and target embeddings, per step.

    Args:
        method (str): ``dann`` (domain classifier behind gradient reversal), ``mmd`` or ``coral``.
        weight (float): weight of the loss in the total.
        source (MultimodalData): labelled source-train data (labels unused here).
        target (MultimodalData): target-train data, used without labels.
    """

    def __init__(self, method: str, weight: float, source: MultimodalData, target: MultimodalData) -> None:
        if method not in METHODS:
            raise ValueError(f"unknown alignment method {method!r}; known: {', '.join(METHODS)}")
        self.method, self.weight = method, weight
        self.source, self.target = source, target
        self.classifier: DomainClassifier | None = None

    def parameters(self, embedding_dim: int) -> list[nn.Parameter]:
        """Extra trainable parameters (DANN's domain classifier), built for ``embedding_dim``."""
        if self.method != "dann":
            return []
        self.classifier = DomainClassifier(embedding_dim)
        return list(self.classifier.parameters())

    def _embeddings(
        self, model: nn.Module, data: MultimodalData, size: int, generator, device
    ) -> torch.Tensor:
        index = torch.randint(len(data), (min(size, len(data)),), generator=generator)
        batch = data.batch(index).to(device)  # cut from data's packed sequences (MultimodalData.pack)
        return model(batch.features, batch.masks).embeddings  # (B, E)

    def loss(
        self, model: nn.Module, batch_size: int, generator: torch.Generator, device: torch.device
    ) -> torch.Tensor:
        """The weighted alignment loss of one random source batch and one random target batch."""
        source = self._embeddings(model, self.source, batch_size, generator, device)  # (B, E)
        target = self._embeddings(model, self.target, batch_size, generator, device)  # (B, E)
        if self.method == "dann":
            if self.classifier is None:
                raise RuntimeError("call Alignment.parameters() first (it builds the domain classifier)")
            self.classifier.to(device)
            value = dann_loss(self.classifier, source, target)
        elif self.method == "mmd":
            value = mmd_loss(source, target)
        else:
            value = coral_loss(source, target)
        return self.weight * value
