"""What every encoder family shares: :class:`EncoderInfo`, :func:`config_hash`, seeding and
freezing of torch models, and hidden-layer selection (:func:`check_layers`, :func:`stack_layers`).

No family module imports another; each imports only this one (and :mod:`mer.encoders` imports
them all), so the package has no import cycle.

Shape legend: B = batch, T = encoder frames or tokens, D = hidden size, K = chosen layers.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

logger = logging.getLogger(__name__)


@dataclass
class EncoderInfo:
    """What an encoder is, for ``meta.json`` and cache keys.

    Attributes:
        model (str): the spec string it was built from.
        weights (str): ``"pretrained"``, ``"random-init"`` or ``"none (signal processing)"``.
        hidden_dim (int): D, the size of every output vector.
        config_hash (str): first 16 hex digits of the sha256 of the model config as sorted-key
            JSON (without ``transformers_version``, ``_name_or_path`` and ``dtype``, which do not
            change the function the model computes).
        extra (dict): modality details, e.g. ``{"frame_rate_hz": 50.0}`` (audio),
            ``{"image_size": 64}`` (video), ``{"num_hidden_states": 7}`` (text), plus
            ``init_seed`` for random-init models. Text and audio encoders add ``"layers"`` (and
            audio ``"chunk_seconds"`` / ``"overlap_seconds"``) on each ``encode`` call: the
            settings of the latest call.
        revision (str or None): the revision the spec pinned (``org/name@<revision>``), or None.
        commit (str or None): the hub commit the weights were actually loaded from (read from the
            hub cache's snapshot path), or None for local paths and built-in specs, whose weights
            are identified by their weights hash instead (``meta.json``'s ``weights_hash``).
    """

    model: str
    weights: str
    hidden_dim: int
    config_hash: str
    extra: dict = field(default_factory=dict)
    revision: str | None = None
    commit: str | None = None


def split_revision(spec: str) -> tuple[str, str | None]:
    """Split a pretrained spec ``org/name@<revision>`` into the hub id (or path) and revision.

    An existing local path is never split (it may contain ``@``); no ``@`` gives no revision.

    >>> split_revision("microsoft/wavlm-base-plus@4c6a1cd1a9a0f3e5b7b3d1c6c3a1e3f0b0e0d0c1")
    ('microsoft/wavlm-base-plus', '4c6a1cd1a9a0f3e5b7b3d1c6c3a1e3f0b0e0d0c1')
    >>> split_revision("bert-base-uncased@main")
    ('bert-base-uncased', 'main')
    >>> split_revision("openai/clip-vit-base-patch32")
    ('openai/clip-vit-base-patch32', None)
    >>> split_revision("bert-base-uncased@")
    Traceback (most recent call last):
    ...
    ValueError: spec 'bert-base-uncased@': empty revision after '@'; write org/name@<commit sha>
    """
    if "@" not in spec or Path(spec).exists():
        return spec, None
    source, revision = spec.rsplit("@", 1)
    if not source or not revision:
        what = "revision after" if source else "model before"
        raise ValueError(f"spec {spec!r}: empty {what} '@'; write org/name@<commit sha>")
    return source, revision


def resolved_commit(source: str, revision: str | None) -> str | None:
    """The hub commit ``source``'s files were loaded from: the ``snapshots/<sha>`` directory of
    the hub cache that ``config.json`` resolves to. None for a local directory (or if the file
    cannot be resolved), whose weights are identified by their hash instead."""
    if Path(source).exists():
        return None
    from transformers.utils.hub import cached_file, extract_commit_hash

    try:
        resolved = cached_file(source, "config.json", revision=revision)
    except (OSError, ValueError) as exc:
        logger.warning("%s: cannot tell which hub commit was loaded (%s)", source, exc)
        return None
    return extract_commit_hash(resolved, None)


def pretrained_source(spec: str) -> tuple[str, str | None]:
    """:func:`split_revision`, warning when a hub id carries no revision: the weights behind it
    may change on the hub while ``params.yaml`` (and so DVC) sees nothing to re-run."""
    source, revision = split_revision(spec)
    if revision is None and not Path(source).exists():
        logger.warning(
            "%s has no pinned revision: if the hub checkpoint changes, DVC will not re-run the "
            "extract stage; pin it as %s@<commit sha> (meta.json records the commit used)",
            spec,
            spec,
        )
    return source, revision


def config_hash(config: Any) -> str:
    """First 16 hex digits of the sha256 of a transformers config's sorted-key JSON."""
    config_dict = config.to_dict()
    for volatile in ("transformers_version", "_name_or_path", "dtype", "torch_dtype"):
        config_dict.pop(volatile, None)
    text = json.dumps(config_dict, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed torch's CPU RNG for a block and restore the caller's RNG state afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def freeze(model: torch.nn.Module, device: str) -> torch.nn.Module:
    """fp32 on ``device``, ``eval()`` and ``requires_grad_(False)``: a frozen feature extractor."""
    model = model.to(device=device, dtype=torch.float32)
    model.eval()
    model.requires_grad_(False)
    return model


def check_layers(layers: tuple[int, ...] | list[int], num_hidden_states: int) -> tuple[int, ...]:
    """Validate hidden-state indices as in transformers' ``output_hidden_states``.

    Index 0 is the embedding output, ``num_hidden_states - 1`` (or -1) the last layer.

    >>> check_layers([-1, 0, 3], 7)
    (-1, 0, 3)
    >>> check_layers((7,), 7)
    Traceback (most recent call last):
    ...
    ValueError: layers (7,): index 7 out of range for 7 hidden states (valid: -7 .. 6)
    """
    layers = tuple(layers)
    if not layers:
        raise ValueError("layers must name at least one hidden-state index, e.g. (-1,)")
    for layer in layers:
        if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)):
            raise ValueError(f"layers {layers}: {layer!r} is not an integer index")
        if not -num_hidden_states <= layer < num_hidden_states:
            raise ValueError(
                f"layers {layers}: index {layer} out of range for {num_hidden_states} hidden states "
                f"(valid: {-num_hidden_states} .. {num_hidden_states - 1})"
            )
    return tuple(int(layer) for layer in layers)


def stack_layers(output: Any, layers: tuple[int, ...], num_hidden_states: int) -> torch.Tensor:
    """Concatenate the chosen hidden states along the feature axis: ``(B, T, len(layers) * D)``.

    The last index is ``last_hidden_state`` itself, so a layer -1 block always equals the
    single-layer output (a few architectures normalise only the returned last state).
    """
    blocks = []
    for layer in layers:
        if layer % num_hidden_states == num_hidden_states - 1:
            blocks.append(output.last_hidden_state)  # (B, T, D)
        else:
            blocks.append(output.hidden_states[layer])  # (B, T, D)
    return blocks[0] if len(blocks) == 1 else torch.cat(blocks, dim=-1)  # (B, T, len(layers) * D)


def needs_hidden_states(layers: tuple[int, ...], num_hidden_states: int) -> bool:
    """Whether any chosen layer is not the last one (so ``output_hidden_states`` is needed).

    >>> needs_hidden_states((-1,), 7), needs_hidden_states((6,), 7), needs_hidden_states((3, -1), 7)
    (False, False, True)
    """
    return any(layer % num_hidden_states != num_hidden_states - 1 for layer in layers)
