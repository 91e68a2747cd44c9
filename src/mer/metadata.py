"""The metadata stage's work: load the source and target corpora, split them by protocol,
check for leakage, and write the tables, split files, quarantine and counts.

Every check that can fail on the user's setup (a root that is missing, a file a layout needs,
a label map the corpus lacks, source and target with different classes) runs for both roles
before any corpus is read.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from mer import protocols, schema
from mer.corpora import cremad, iemocap, meld, mmsa, ravdess, synthetic
from mer.corpora.common import QUARANTINE_COLUMNS, LayoutError, LoadResult
from mer.corpora.labels import label_map
from mer.external import media_needed
from mer.params import CorporaParams, ParamsError, SyntheticParams
from mer.recipes import Offer, RunModels, check_run
from mer.vocab import EMOTIONS, LABEL_KINDS, MODALITIES

logger = logging.getLogger(__name__)

ROLES = ("source", "target")
LOADERS = {
    "iemocap": iemocap,
    "meld": meld,
    "cremad": cremad,
    "ravdess": ravdess,
    "mosi": mmsa,
    "mosei": mmsa,
}


@dataclass
class Built:
    """One role's corpus after the protocol: table (``split`` = main fold), split file, quarantine."""

    corpus: str
    table: pd.DataFrame
    splits: pd.DataFrame
    quarantine: pd.DataFrame
    counts: dict


def classes_of(cfg: CorporaParams, corpus: str) -> tuple[str, ...]:
    """The class names a corpus gets under its configured label map."""
    if corpus == "synthetic":
        return EMOTIONS
    return label_map(corpus, cfg.corpus(corpus).labels).classes


def declared_label_kinds(corpus: str) -> tuple[str, ...]:
    """The label kinds (``mer.vocab.LABEL_KINDS``) a corpus's loader says its table carries."""
    if corpus == "none":
        return ()
    return (synthetic if corpus == "synthetic" else LOADERS[corpus]).LABEL_KINDS


def corpora_with() -> dict[str, list[str]]:
    """``{label kind: the corpora that have it}``, for the fixes messages suggest."""
    corpora = ["synthetic", *LOADERS]
    return {kind: [c for c in corpora if kind in declared_label_kinds(c)] for kind in LABEL_KINDS}


def check_models(models: RunModels | None, cfg: CorporaParams, built: dict[str, Built] | None = None) -> None:
    """The run's models against the corpora: what their loaders declare (``built`` None, before
    any corpus is read) or what the built tables have (:func:`mer.recipes.check_run`)."""
    if models is None:
        return
    if built is None:
        source = Offer(cfg.source, declared_label_kinds(cfg.source))
        target = None if cfg.target == "none" else Offer(cfg.target, declared_label_kinds(cfg.target))
    else:
        source = Offer.of(built["source"].table)
        target = None if built["target"].table.empty else Offer.of(built["target"].table)
    check_run(models, source, target, corpora_with())


def preflight(cfg: CorporaParams, media: bool | Mapping[str, bool] = True) -> None:
    """Check roots, layouts, label maps and that source and target share their classes.

    ``media`` False (for both roles, or ``{role: bool}``): that role reads no media files (its
    audio / video features are external), so a layout without them (MMSA's ``Raw/``) passes.

    Raises:
        mer.corpora.common.LayoutError: a root or an expected file is missing (names the param, the
            path and the fix).
        ValueError / ParamsError: a label map the corpus does not have, or mismatched classes.
    """
    per_role = media if isinstance(media, Mapping) else dict.fromkeys(ROLES, media)
    for role, corpus in zip(ROLES, (cfg.source, cfg.target), strict=True):
        if corpus in LOADERS:
            section = cfg.corpus(corpus)
            label_map(corpus, section.labels)
            try:
                media_option = {"media": per_role[role]} if LOADERS[corpus] is mmsa else {}
                LOADERS[corpus].check_layout(Path(section.root), **media_option)
            except LayoutError as exc:  # name the param that points there, and how to set it
                raise LayoutError(
                    f"corpora.{corpus}.root: {exc}; point it at your copy of the corpus, e.g. "
                    f"dvc exp run -S corpora.{corpus}.root=/path/to/{Path(section.root).name}"
                ) from None
    if cfg.target != "none":
        source, target = classes_of(cfg, cfg.source), classes_of(cfg, cfg.target)
        if source != target:
            raise ParamsError(
                f"corpora.target: {cfg.target} has classes {list(target)} but the source {cfg.source} has "
                f"{list(source)}; transfer needs one label set: use the shared4 label map on both "
                f"(corpora.<name>.labels: shared4) or corpora.target: none"
            )


def _load_real(corpus: str, cfg: CorporaParams, media: bool = True) -> LoadResult:
    section = cfg.corpus(corpus)
    options: dict = {"labels": section.labels}
    if corpus == "meld":
        options["max_overrun_seconds"] = section.max_overrun_seconds
    if corpus in ("mosi", "mosei"):
        options["corpus"] = corpus
        options["media"] = media  # features-only copies: label.csv alone (mer.external)
    return LOADERS[corpus].load(Path(section.root), **options)


def build_role(
    role: str,
    cfg: CorporaParams,
    synthetic_cfg: SyntheticParams,
    raw_root: Path,
    external: tuple[str, ...] = (),
    media: bool = True,
) -> Built:
    """Load, split and validate the corpus playing ``role`` (source or target). ``external``: the
    modalities read from released features (recorded as the corpus's even without media files);
    ``media``: whether the corpus's media files are read (see :func:`preflight`)."""
    corpus = cfg.source if role == "source" else cfg.target
    name = f"{role} ({corpus})"
    marker = raw_root / role
    if corpus != "synthetic":
        # the extract stage depends on data/raw/synthetic/<role>: leave a note saying why it is empty
        marker.mkdir(parents=True, exist_ok=True)
        section = None if corpus == "none" else cfg.corpus(corpus)
        note = "no target (corpora.target: none)\n" if section is None else f"{corpus}: {section.root}\n"
        (marker / "NOT_SYNTHETIC.txt").write_text(f"{role} is not synthetic; it reads {note}")
    if corpus == "none":
        table = pd.DataFrame({c: pd.Series(dtype=object) for c in schema.COLUMNS})
        table.attrs["classes"] = list(classes_of(cfg, cfg.source))
        table.attrs |= {"corpus": "none", "label_kinds": [], "modalities": []}
        empty = pd.DataFrame(columns=list(protocols.SPLIT_COLUMNS))
        return Built(corpus, table, empty, pd.DataFrame(columns=list(QUARANTINE_COLUMNS)), {"utterances": 0})
    if corpus == "synthetic":
        synthetic.generate(synthetic_cfg, role, marker)
        result = LoadResult(synthetic.load(marker, corpus=f"synthetic_{role}"))
    else:
        result = _load_real(corpus, cfg, media)
    table = result.table.reset_index(drop=True)
    splits = protocols.assign_splits(table, corpus, None if corpus == "synthetic" else cfg.corpus(corpus))
    protocols.check_folds(table, splits, corpus, name)
    main = splits[splits["fold"] == protocols.MAIN_FOLD]
    table["split"] = table["utt_id"].map(dict(zip(main["utt_id"], main["split"], strict=True)))
    table.attrs["classes"] = list(classes_of(cfg, corpus))
    table.attrs["corpus"] = corpus
    # what models may train on: the loader's declared label kinds this copy has, its modalities
    table.attrs["label_kinds"] = list(schema.observed_label_kinds(table, declared_label_kinds(corpus)))
    observed = set(schema.observed_modalities(table)) | (set(external) if corpus != "synthetic" else set())
    table.attrs["modalities"] = [m for m in MODALITIES if m in observed]
    missing = sorted(set(declared_label_kinds(corpus)) - set(table.attrs["label_kinds"]))
    if missing:
        logger.warning("%s: no train utterance has %s; models needing them will not train", name, missing)
    schema.validate(table, name, leakage_keys=protocols.leakage_keys(corpus))
    counts = result.counts()
    counts |= {f"split/{s}": int((table["split"] == s).sum()) for s in schema.SPLITS}
    counts["speakers"] = int(table["speaker"].nunique())
    counts["classes"] = len(table.attrs["classes"])
    return Built(corpus, table, splits, result.quarantine, counts)


def build_metadata(
    cfg: CorporaParams,
    synthetic_cfg: SyntheticParams,
    raw_root: Path,
    out: Path,
    splits_dir: Path,
    metrics_path: Path,
    models: RunModels | None = None,
    external: Mapping[str, tuple[str, ...]] | None = None,
) -> dict[str, Built]:
    """The metadata stage: both roles' tables, split files, ``quarantine.csv`` and counts.

    With ``models`` (every model the run trains), also checks that the corpora support them
    (:mod:`mer.recipes`): before reading any corpus, from what its loader declares, and again
    on the built tables, before anything is written.

    ``external``: per role (``source`` / ``target``), the modalities whose features are released
    ones (``extract.<modality>.model: external:<path>`` with the role's ``extract.target``
    overrides: :func:`mer.external.external_by_role`); when they cover every audio / video modality
    the models read, that role's corpus needs and reads no media file (MMSA: ``label.csv``
    alone), while the other role may still read its media (seed 002: MOSEI features-only, MOSI
    through real-time extractors).

    Raises:
        ParamsError: the main model needs what the source (or the target) lacks, or a listed
            recipe does under ``train.strict_recipes: true``.
    """
    external = {role: tuple((external or {}).get(role, ())) for role in ROLES}
    read = models.main.modalities if models is not None else MODALITIES
    media = {role: media_needed(external[role], read) for role in ROLES}
    preflight(cfg, media)
    check_models(models, cfg)
    raw_root = Path(raw_root)
    built = {r: build_role(r, cfg, synthetic_cfg, raw_root, external[r], media[r]) for r in ROLES}
    check_models(models, cfg, built)
    splits_dir.mkdir(parents=True, exist_ok=True)
    quarantine = []
    for role, result in built.items():
        schema.write(result.table, out / f"{role}.parquet")
        result.splits.to_csv(splits_dir / f"{role}.csv", index=False, lineterminator="\n")
        quarantine.append(result.quarantine.assign(role=role))
        for reason, n in result.quarantine["reason"].value_counts().items():
            logger.warning("%s (%s): %d utterances quarantined: %s", role, result.corpus, n, reason)
    pd.concat(quarantine, ignore_index=True).to_csv(out / "quarantine.csv", index=False, lineterminator="\n")
    # numbers only (a declared DVC metrics file); the corpus names are in params.yaml and the tables
    counts = {role: dict(r.counts) for role, r in built.items()}
    metrics_path.parent.mkdir(parents=True, exist_ok=True)
    metrics_path.write_text(json.dumps(counts, indent=2, sort_keys=True) + "\n")
    return built
