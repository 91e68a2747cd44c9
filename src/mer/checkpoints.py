"""Self-describing model directories, in the shape of Hugging Face's ``save_pretrained``.

A trained model (main, baseline, ablation, every fold) is a directory::

    MODEL_DIR/config.json             what the model is and what it reads (below)
    MODEL_DIR/seed<k>.safetensors     the weights of training seed k (standardisation buffers too)

``config.json`` holds the :class:`~mer.models.config.FusionConfig`, the class names, the task, the
modalities, the training corpus (name, label scheme, fold), per modality the encoder that made the
features (spec, weights origin, weights hash, the extraction params and the hash of the
preprocessing code), the params hash, the mer version, and each seed's file with its sha256.
safetensors holds tensors only, so loading a colleague's model runs no code (a pickled ``.pt``
can). :func:`load_model` reads a directory back; ``mer predict`` re-creates the features from the
recorded encoders (:mod:`mer.predict`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file

from mer import __version__
from mer.files import write_json
from mer.models.config import FusionConfig
from mer.models.fusion import FusionModel
from mer.vocab import EMOTIONS

#: ``config.json``'s ``format``: bumped when the layout changes.
FORMAT = "mer-fusion-model/1"
CONFIG_NAME = "config.json"


def weights_name(seed: int) -> str:
    """The weights file of training seed ``seed``."""
    return f"seed{seed}.safetensors"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_weights(model: FusionModel, model_dir: str | Path, seed: int) -> Path:
    """Write ``model``'s state dict as ``model_dir/seed<seed>.safetensors``."""
    path = Path(model_dir) / weights_name(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}
    # one metadata key: safetensors writes the map in the order of a Rust HashMap, random per
    # process, so two keys made the same weights two different files (the seed is in the name)
    save_file(state, str(path), metadata={"format": FORMAT})
    return path


def encoder_records(feature_root: str | Path, modalities: tuple[str, ...]) -> dict[str, dict]:
    """Per modality, what made its features (from the extract stage's ``meta.json``): the encoder
    spec, weights origin and hash, config hash, stored dim, precision, the hash of the
    preprocessing code and the extraction params :mod:`mer.predict` needs to repeat it."""
    records = {}
    for modality in modalities:
        meta_path = Path(feature_root) / modality / "meta.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"{meta_path}: no features of {modality}; run the extract stage first")
        meta = json.loads(meta_path.read_text())
        records[modality] = {
            key: meta.get(key)
            for key in (
                "model", "weights", "weights_hash", "config_hash", "code_hash", "hidden_dim",
                "precision", "encoder_extra", "params",
            )
        }  # fmt: skip
    return records


def write_config(
    model_dir: str | Path,
    *,
    config: FusionConfig,
    classes: tuple[str, ...] | list[str],
    seeds: tuple[int, ...] | list[int],
    encoders: dict[str, dict],
    corpus: dict[str, Any],
    params_hash: str,
) -> Path:
    """Write ``model_dir/config.json`` for the seeds' weights already saved there."""
    model_dir = Path(model_dir)
    weights = {}
    for seed in seeds:
        path = model_dir / weights_name(seed)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: save the weights of seed {seed} before the config")
        weights[str(seed)] = {"file": path.name, "sha256": _sha256(path)}
    description = {
        "format": FORMAT,
        "mer_version": __version__,
        "model_config": config.to_dict(),
        "task": config.task,
        "classes": list(classes),
        "label_map": {str(i): name for i, name in enumerate(classes)},
        "modalities": list(config.used_modalities),
        "seeds": list(seeds),
        "weights": weights,
        "encoders": encoders,
        "corpus": corpus,
        "params_hash": params_hash,
    }
    path = model_dir / CONFIG_NAME
    write_json(path, description)
    return path


def save_model(
    model_dir: str | Path,
    models: FusionModel | dict[int, FusionModel],
    *,
    classes: tuple[str, ...] | list[str] | None = None,
    encoders: dict[str, dict] | None = None,
    corpus: dict[str, Any] | None = None,
    params_hash: str = "",
) -> Path:
    """Save one model (as seed 0) or ``{seed: model}`` as a model directory; return the directory.
    ``classes`` default to the first ``num_classes`` of :data:`mer.vocab.EMOTIONS`."""
    models = {0: models} if isinstance(models, FusionModel) else models
    config = next(iter(models.values())).config
    for seed, model in models.items():
        save_weights(model, model_dir, seed)
    write_config(
        model_dir, config=config, classes=classes or EMOTIONS[: config.num_classes], seeds=list(models),
        encoders=encoders or {}, corpus=corpus or {}, params_hash=params_hash,
    )  # fmt: skip
    return Path(model_dir)


@dataclass
class TrainedModel:
    """A model directory read back: one :class:`FusionModel` per training seed (in eval mode)
    and the description from ``config.json``.

    Attributes:
        path: the directory.
        models (dict[int, FusionModel]): the seeds' models, in the order of ``config.json``.
        description (dict): ``config.json`` as read.
        cache (dict): what users of the model build once (``mer.predict`` keeps its encoders here).
    """

    path: Path
    models: dict[int, FusionModel]
    description: dict = field(repr=False)
    cache: dict = field(default_factory=dict, repr=False)  # e.g. mer.predict's built encoders

    @property
    def config(self) -> FusionConfig:
        return next(iter(self.models.values())).config

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(self.description["classes"])

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(self.description["modalities"])

    @property
    def encoders(self) -> dict[str, dict]:
        return self.description["encoders"]

    @property
    def seeds(self) -> tuple[int, ...]:
        return tuple(self.models)

    def first(self) -> FusionModel:
        """The first seed's model (what the transfer stage fine-tunes)."""
        return next(iter(self.models.values()))


def _refuse_old(path: Path) -> None:
    legacy = sorted(path.glob("seed*.pt")) if path.is_dir() else [path] if path.suffix == ".pt" else []
    if legacy:
        raise RuntimeError(
            f"{legacy[0]}: a pickled checkpoint of an older mer (before self-describing model "
            "directories); mer no longer loads pickles, which can run code. Re-create the model with "
            "`dvc repro` (or `dvc repro -f <its stage>`): it is saved as config.json + "
            "seed<k>.safetensors"
        )


def load_model(path: str | Path, seed: int | None = None, device: str = "cpu") -> TrainedModel:
    """Read a model directory written by :func:`write_config` (every seed, or only ``seed``).

    Raises:
        FileNotFoundError: no ``config.json`` there; RuntimeError: a pickled ``.pt`` of an older
        mer, a weights file whose sha256 differs from the config's, or weights that do not fit.
    """
    path = Path(path)
    config_path = path / CONFIG_NAME
    if not config_path.is_file():
        _refuse_old(path)
        raise FileNotFoundError(f"{config_path}: no model here; train one with `dvc repro` (make repro)")
    description = json.loads(config_path.read_text())
    if description.get("format") != FORMAT:
        raise RuntimeError(
            f"{config_path}: format {description.get('format')!r}, this mer reads {FORMAT!r}; "
            "re-create the model with `dvc repro`"
        )
    seeds = [int(s) for s in description["seeds"]]
    if seed is not None:
        if seed not in seeds:
            raise ValueError(f"{path}: no seed {seed}; this model has seeds {seeds}")
        seeds = [seed]
    config = FusionConfig(**description["model_config"])
    models = {}
    for k in seeds:
        entry = description["weights"][str(k)]
        weights_path = path / entry["file"]
        if not weights_path.is_file():
            raise FileNotFoundError(f"{weights_path}: missing weights of seed {k}")
        if _sha256(weights_path) != entry["sha256"]:
            raise RuntimeError(f"{weights_path}: sha256 differs from {config_path}'s; the file was changed")
        model = FusionModel(FusionConfig(**config.to_dict()))
        missing, unexpected = model.load_state_dict(load_file(str(weights_path)), strict=False)
        if missing or unexpected:
            raise RuntimeError(
                f"{weights_path}: the weights do not fit this mer version's FusionModel "
                f"({len(missing)} missing, e.g. {missing[:1]}; {len(unexpected)} unexpected, e.g. "
                f"{unexpected[:1]}); re-create the model with `dvc repro`"
            )
        models[k] = model.to(device).eval()
    return TrainedModel(path=path, models=models, description=description)


def copy_model(model: FusionModel) -> FusionModel:
    """A new model with ``model``'s config and weights, built as :func:`load_model` builds one
    (so it draws the same numbers from the global RNG, and a seeded run that follows goes exactly
    as after ``load_model``), without re-reading the checkpoint."""
    copy = FusionModel(FusionConfig(**model.config.to_dict()))
    copy.load_state_dict(model.state_dict())
    return copy.eval()
