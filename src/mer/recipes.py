"""Which models the source corpus supports: a model config's needs against what the corpus has.

A model states what it trains on (:meth:`mer.models.config.FusionConfig.needs`: label kinds such
as a continuous sentiment score, and modalities); a corpus states what it has (the label kinds
and modalities the metadata stage records in its table, :class:`Offer`). A model whose needs are
not all met would train a loss term on nothing (e.g. a multi-task sentiment head on IEMOCAP,
which has no sentiment, is just the ``ensemble`` baseline again), so it never trains:

- the main model (``model`` + ``fusion``): an error, in the metadata stage (before any corpus
  is read, from what its loader declares; again once it is loaded) and in its train stage;
- a recipe of ``train.baselines`` / ``ablation.variants``: its stage writes a skip record
  (:mod:`mer.skips`) in seconds; the evaluate stage and the report list it with the reason.
  With ``train.strict_recipes: true`` the metadata stage fails instead, naming the key, the
  recipe, what is missing and the fix.

>>> from mer.models.config import FusionConfig
>>> iemocap = Offer("iemocap", label_kinds=("vad",), modalities=("text", "audio", "video"))
>>> [u.name for u in unmet_needs(FusionConfig(mode="ensemble", sentiment_weight=0.5), iemocap)]
['sentiment_polarity']
>>> problem = recipe_problem("multitask", FusionConfig(sentiment_weight=0.5), iemocap)
>>> print(problem.replace(", which", ",\\n which"))
recipe multitask needs sentiment polarity labels (recipes.multitask.sentiment_weight: 0.5),
 which iemocap does not have
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from mer import schema
from mer.models.config import FusionConfig
from mer.skips import write_skip
from mer.validation import ParamsError

logger = logging.getLogger(__name__)

#: The params key that lists each role's recipes.
ROLE_KEYS = {"baseline": "train.baselines", "ablation": "ablation.variants"}
STRICT_KEY = "train.strict_recipes"
#: How messages name each label kind (``mer.vocab.LABEL_KINDS``).
LABEL_NAMES = {
    "sentiment_score": "a continuous sentiment score",
    "sentiment_polarity": "sentiment polarity labels",
    "vad": "valence / arousal / dominance labels",
}


@dataclass(frozen=True)
class Offer:
    """What one corpus offers models.

    Attributes:
        corpus (str): its name (``iemocap``).
        label_kinds (tuple[str, ...]): label kinds besides the emotion it has.
        modalities (tuple[str, ...] or None): modalities it has inputs for (None: not known yet,
            before the corpus is read).
    """

    corpus: str
    label_kinds: tuple[str, ...]
    modalities: tuple[str, ...] | None = None

    @classmethod
    def of(cls, table: pd.DataFrame, path: str | Path = "the metadata table") -> Offer:
        """What the metadata stage recorded in a table's attrs."""
        return cls(
            str(table.attrs.get("corpus", path)),
            schema.recorded(table, "label_kinds", path),
            schema.recorded(table, "modalities", path),
        )


@dataclass(frozen=True)
class Unmet:
    """One need of a model that a corpus (or ``model.modalities``) does not meet.

    Attributes:
        kind (str): ``label`` or ``modality``.
        name (str): the label kind (``sentiment_score``) or the modality (``video``).
        setting (str): the config field that needs it, ``task: regression`` / ``mode: video``
            (empty for the modalities a fused mode reads: those of ``model.modalities``).
        needs (str): the need in words (``a continuous sentiment score``).
        absent (str): why it is unmet (``which iemocap does not have``).
        hint (str): what else would meet it (``add video to model.modalities``), or empty.
    """

    kind: str
    name: str
    setting: str
    needs: str
    absent: str
    hint: str = ""


def unmet_needs(
    config: FusionConfig, offer: Offer, corpora_with: Mapping[str, list[str]] | None = None
) -> list[Unmet]:
    """The needs of ``config`` that ``offer`` (or ``config.modalities``, i.e. params.yaml
    ``model.modalities``) does not meet; empty when the model can train.

    ``corpora_with`` (``{label kind: corpora that have it}``) adds a hint to label needs.
    """
    needs = config.needs()
    unmet = []
    for kind in needs.labels:
        if kind not in offer.label_kinds:
            others = sorted((corpora_with or {}).get(kind, []))
            hint = f"use a source corpus that has {LABEL_NAMES[kind]} ({', '.join(others)})" if others else ""
            unmet.append(Unmet("label", kind, needs.settings[kind], LABEL_NAMES[kind],
                               f"which {offer.corpus} does not have", hint))  # fmt: skip
    unimodal = config.mode in needs.modalities
    for modality in needs.modalities:
        setting = f"mode: {config.mode}" if unimodal else ""
        if modality not in config.modalities:
            unmet.append(Unmet("modality", modality, setting, f"the {modality} modality",
                               f"which model.modalities {list(config.modalities)} does not include",
                               f"add {modality} to model.modalities"))  # fmt: skip
        elif offer.modalities is not None and modality not in offer.modalities:
            column = schema.MODALITY_COLUMNS[modality]
            absent = f"which {offer.corpus} does not have (no train utterance has a {column})"
            hint = "" if unimodal else f"remove {modality} from model.modalities"
            unmet.append(Unmet("modality", modality, setting, f"the {modality} modality", absent, hint))
    return unmet


def _describe(unmet: list[Unmet], section: str) -> str:
    """``needs X (section.setting), which ...; needs Y ...``."""
    parts = []
    for item in unmet:
        setting = f" ({section}.{item.setting})" if item.setting else ""
        parts.append(f"needs {item.needs}{setting}, {item.absent}")
    return " and ".join(parts)


def recipe_problem(
    name: str, config: FusionConfig, offer: Offer, corpora_with: Mapping[str, list[str]] | None = None
) -> str | None:
    """Why recipe ``name`` cannot train on ``offer``; None when it can."""
    unmet = unmet_needs(config, offer, corpora_with)
    return f"recipe {name} {_describe(unmet, f'recipes.{name}')}" if unmet else None


def recipe_fix(name: str, key: str, unmet: list[Unmet]) -> str:
    """What to do about a skipped recipe: drop it from its list, or meet its needs."""
    hints = list(dict.fromkeys(item.hint for item in unmet if item.hint))
    return ", or ".join([f"remove {name} from {key}", *hints])


def check_main(
    config: FusionConfig, offer: Offer, corpora_with: Mapping[str, list[str]] | None = None
) -> None:
    """The main model must be supported by the source corpus.

    Raises:
        ParamsError: naming the setting, what is missing and the fix.
    """
    unmet = unmet_needs(config, offer, corpora_with)
    if unmet:
        hints = list(dict.fromkeys(item.hint for item in unmet if item.hint))
        fields = [f"fusion.{item.setting.split(':')[0]}" for item in unmet if item.setting]
        fixes = [f"change {' / '.join(dict.fromkeys(fields))}"] if fields else []
        raise ParamsError(
            f"model + fusion: the main model {_describe(unmet, 'fusion')}; "
            + ", or ".join([*fixes, *hints] or ["change model / fusion"])
        )


def check_target(
    config: FusionConfig, offer: Offer, corpora_with: Mapping[str, list[str]] | None = None
) -> None:
    """The transfer target must have what the main model's task and inputs read: transfer
    fine-tunes the main model on it (and trains a fresh one). Its auxiliary losses (VAD,
    sentiment head) may lack labels there: those terms are masked out while fine-tuning.

    Raises:
        ParamsError: naming corpora.target, what is missing and the fix.
    """
    task_labels = {"sentiment_score"} if config.task == "regression" else set()
    unmet = [
        u for u in unmet_needs(config, offer, corpora_with) if u.kind == "modality" or u.name in task_labels
    ]
    if unmet:
        others = sorted((corpora_with or {}).get("sentiment_score", [])) if task_labels else []
        alternative = f" ({', '.join(others)})" if others else ""
        raise ParamsError(
            f"corpora.target: the main model {_describe(unmet, 'fusion')}, and transfer fine-tunes it "
            f"there; set corpora.target to a corpus that has it{alternative} or to none"
        )


def check_recipes(
    recipes: Mapping[str, Mapping[str, FusionConfig]],
    offer: Offer,
    strict: bool,
    corpora_with: Mapping[str, list[str]] | None = None,
) -> dict[str, dict[str, str]]:
    """Which listed recipes the source corpus cannot support (``recipes``: ``{key: {name:
    config}}``, key ``train.baselines`` or ``ablation.variants``); each is logged (its stage
    will write a skip record) and returned as ``{key: {name: reason}}``.

    Raises:
        ParamsError: with ``strict`` (``train.strict_recipes: true``), naming each unsupported
            recipe, its key, what is missing and the fix.
    """
    problems: dict[str, dict[str, str]] = {}
    for key, configs in recipes.items():
        for name, config in configs.items():
            problem = recipe_problem(name, config, offer, corpora_with)
            if problem:
                problems.setdefault(key, {})[name] = problem
    lines = [f"{key}: {problem}" for key, by_name in problems.items() for problem in by_name.values()]
    if strict and lines:
        keys = " / ".join(problems)
        raise ParamsError(
            "; ".join(lines) + f"; remove them from {keys} or set {STRICT_KEY}: false (skip them)"
            if len(lines) > 1
            else lines[0] + f"; remove it from {keys} or set {STRICT_KEY}: false (skip it)"
        )
    for line in lines:
        logger.warning("%s: its stages will be skipped (%s: true makes this an error)", line, STRICT_KEY)
    return problems


@dataclass(frozen=True)
class RunModels:
    """Every model a run trains, for the metadata stage's checks.

    Attributes:
        main (FusionConfig): the main model (``model`` + ``fusion``).
        recipes (dict): ``{key: {name: config}}`` of the listed recipes (``train.baselines``,
            ``ablation.variants``).
        strict (bool): ``train.strict_recipes``.
    """

    main: FusionConfig
    recipes: Mapping[str, Mapping[str, FusionConfig]]
    strict: bool = False


def check_run(
    models: RunModels,
    source: Offer,
    target: Offer | None,
    corpora_with: Mapping[str, list[str]] | None = None,
) -> dict[str, dict[str, str]]:
    """The metadata stage's checks: the main model on the source and the target (errors), the
    listed recipes on the source (:func:`check_recipes`); returns the recipes to be skipped."""
    check_main(models.main, source, corpora_with)
    if target is not None:
        check_target(models.main, target, corpora_with)
    return check_recipes(models.recipes, source, models.strict, corpora_with)


def skip_if_unsupported(
    *,
    config: FusionConfig,
    recipe: str | None,
    role: str | None,
    metadata_path: str | Path,
    fold: str,
    out_dirs: list[str | Path],
) -> dict | None:
    """Before a train stage trains: the skip record it wrote to each of ``out_dirs`` when the
    source corpus cannot support recipe ``recipe``, else None (train it).

    Raises:
        ParamsError: the main model (``recipe`` None) is not supported.
    """
    table = schema.read(metadata_path)
    offer = Offer.of(table, metadata_path)
    if recipe is None:
        check_main(config, offer)
        return None
    unmet = unmet_needs(config, offer)
    if not unmet:
        return None
    if role not in ROLE_KEYS:
        raise ValueError(f"--role {role!r}: expected one of {list(ROLE_KEYS)} with --recipe")
    key = ROLE_KEYS[role]
    record = {
        "recipe": recipe,
        "role": role,
        "key": key,
        "fold": str(fold),
        "corpus": offer.corpus,
        "reason": recipe_problem(recipe, config, offer),
        "missing_labels": [u.name for u in unmet if u.kind == "label"],
        "missing_modalities": [u.name for u in unmet if u.kind == "modality"],
        "fix": recipe_fix(recipe, key, unmet),
    }
    for directory in out_dirs:
        write_skip(directory, record)
    logger.warning("%s@%s-%s skipped: %s", role, recipe, fold, record["reason"])
    return record
