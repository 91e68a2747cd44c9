"""The report stage: ``reports/summary.md``, the results a person reads, built by ``dvc repro``.

Every number is printed with its protocol beside it and every number that is compared with its
95 % interval (``mer.uncertainty``); a difference is called a gain or a loss only when its paired
interval excludes 0, never when it is *within noise*. Reference numbers from the literature are
marked as references, never mixed with mer's results; synthetic-corpus scores are labelled as a
mechanics check.

Inputs: ``metrics/metadata.json`` (corpus loading), the evaluate stage's ``results/`` tables
(``models.csv``, ``comparisons.csv``, ``transfer.csv``, ``folds.csv``, ``per_class.csv``,
``per_speaker.csv``, ``skipped.csv``, ``gates.json``, ``adapt.json``, ``provenance.json``; any
may be missing), the PNGs and the metadata tables.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from mer import metric_keys, protocols, uncertainty

MAIN = metric_keys.MAIN_MODEL


@dataclass(frozen=True)
class Reference:
    """A published number under a named protocol: shown for orientation, never as a mer result."""

    corpus: str
    system: str
    protocol: str
    reported: str


# Published numbers under honest protocols (../shared/corpora.md); references, not mer results.
LOSO, OFFICIAL = "leave-one-session-out, 5 folds", "official split"
REFERENCES = (
    Reference("IEMOCAP 4-class", "frozen WavLM Base+ + small head (SUPERB ER)", LOSO, "accuracy ≈ 68.7%"),
    Reference("IEMOCAP 4-class", "frozen WavLM Large + small head (SUPERB ER)", LOSO, "accuracy ≈ 70.6%"),
    Reference("MELD 7-class", "text-only RoBERTa with dialogue context", OFFICIAL, "weighted F1 ≈ 64–66"),
    Reference("MELD 7-class", "multimodal systems", OFFICIAL, "weighted F1 ≈ 65–69"),
    Reference("CMU-MOSI", "Self-MM (MMSA, 5 seeds)", OFFICIAL, "Acc-2 (non0) 84.8, MAE 0.724, Corr 0.789"),
)

MODEL_NAMES = {
    MAIN: "main model (fusion section)",
    "concat": "early fusion (concat)",
    "late": "late fusion",
    "ensemble": "early + late ensemble",
    "multitask": "ensemble + sentiment head (multi-task)",
    "text": "text only",
    "audio": "audio only",
    "video": "video only",
    "regression": "cross-attention regression (seed 002)",
    "cross_attention": "cross-attention baseline (seed 003)",
    "vad_guidance": "+ VAD-guided attention",
    "adaptive_fusion": "+ emotion-aware adaptive fusion (EAAF)",
    "micl": "+ MICL contrastive loss",
    "full": "full (VGA + EAAF + MICL + VAD loss + label smoothing)",
    "decoder": "beta fusion + emotion-query decoder (seed 000)",
}
# the ablation table's rows, in order: seed 003's ladder, seed 000's decoder, the fusion families
ABLATION_ORDER = ("cross_attention", "vad_guidance", "adaptive_fusion", "micl", "full", "decoder",
                  "concat", "late", "ensemble", "multitask", MAIN)  # fmt: skip
ADAPTER_NAMES = {
    "none": "none (target features as extracted)",
    "seed002": "seed 002 (MSE on random pairs)",
    "coral": "CORAL (moment matching, residual where dims match)",
    "mmd": "MMD (residual where dims match)",
    "adversarial": "adversarial (domain classifier, residual where dims match)",
}
STRATEGY_NAMES = {
    "full": "full fine-tune",
    "head": "head only",
    "adapters": "input adapters only",
    "scratch": "from scratch",
    "dann": "full + DANN",
    "mmd": "full + MMD",
    "coral": "full + CORAL",
}
SWAP_NAMES = {
    "original": "the model's own extractor (reference)",
    "seed002": "cheap → adapter (seed 002, random pairs)",
    "paired": "cheap → adapter (paired frames)",
}
METRIC_NAMES = {
    "ua": "UA", "wa": "WA", "f1_weighted": "weighted F1", "f1_macro": "macro F1", "mae": "MAE",
    "pearson": "Pearson r", "acc2_has0": "Acc-2 has0", "f1_has0": "F1 has0", "acc2_non0": "Acc-2 non0",
    "f1_non0": "F1 non0", "acc7": "Acc-7", "acc5": "Acc-5",
}  # fmt: skip
PLAIN = frozenset({"mae", "pearson"})  # shown as is (3 decimals); the others are fractions, shown in %
REGRESSION_COLUMNS = ("mae", "pearson", "acc2_has0", "f1_has0", "acc2_non0", "f1_non0", "acc7", "acc5")
FOLD_METRICS = ("ua", "wa", "f1_weighted", "mae", "pearson", "acc2_non0")
MAX_SPEAKERS = 12
NUMERIC = frozenset({"value", "low", "high", "seed_std", "dev", "n_seeds", "n_folds", "n_test", "n_train",
                     "budget", "a_value", "b_value", "delta", "p", "p_holm", "best_by_dev", "recall", "n",
                     "ua", "snr_db", "delta_low", "delta_high"})  # fmt: skip
TABLES = {
    "models": ("model", "role", "task", "metric", "value", "low", "high", "seed_std", "dev", "n_seeds",
               "n_folds", "n_test", "folds", "protocol"),
    "comparisons": ("table", "a", "b", "budget", "metric", "a_value", "b_value", "delta", "low", "high",
                    "p", "p_holm", "verdict", "n_seeds", "n_folds", "n_test"),
    "transfer": ("kind", "budget", "setting", "metric", "value", "low", "high", "seed_std", "dev",
                 "n_seeds", "n_test", "n_train", "best_by_dev"),
    "folds": ("model", "fold", "seed", "split", "metric", "value"),
    "per_class": ("model", "class", "recall"),
    "per_speaker": ("model", "group", "name", "n", "ua"),
    "skipped": ("recipe", "role", "folds", "missing", "reason", "fix"),
    "robustness": ("model", "condition", "kind", "modality", "snr_db", "metric", "value", "low", "high",
                   "delta", "delta_low", "delta_high", "verdict", "n_seeds", "n_test"),
}  # fmt: skip
INTERVALS = (
    "**How to read the intervals.** A score is `value [low, high]`: the mean over the protocol folds "
    "and training seeds with its 95% interval, which covers both test-utterance sampling (a "
    "class-stratified bootstrap within each fold) and training-seed variation (with one seed, "
    "utterance sampling only). Comparisons (Δ = A − B) are paired by utterance and seed; the verdict "
    "comes from the interval alone: *better* or *worse* when it excludes 0, *within noise* when it "
    "covers 0, and then no gain is claimed. p-values are Holm-adjusted within each table and metric. "
    "Method: `mer.uncertainty`."
)
NO_TARGET = "No target corpus (`corpora.target: none`): adapt and transfer were skipped."


@dataclass
class Results:
    """The evaluate stage's ``results/`` tables (empty where a file is missing)."""

    models: pd.DataFrame
    comparisons: pd.DataFrame
    transfer: pd.DataFrame
    folds: pd.DataFrame
    per_class: pd.DataFrame
    per_speaker: pd.DataFrame
    skipped: pd.DataFrame
    robustness: pd.DataFrame
    gates: dict
    adapt: dict
    provenance: dict

    @classmethod
    def load(cls, results_dir: Path) -> Results:
        tables = {name: _csv(results_dir / f"{name}.csv", columns) for name, columns in TABLES.items()}
        files = {name: _json(results_dir / f"{name}.json") for name in ("gates", "adapt", "provenance")}
        return cls(**tables, **files)


def _csv(path: Path, columns: tuple[str, ...]) -> pd.DataFrame:
    """A results table, strings kept as written ("none" is an adapter, not a missing value)."""
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (FileNotFoundError, pd.errors.EmptyDataError):
        frame = pd.DataFrame(columns=list(columns), dtype=str)
    for column in columns:
        if column not in frame:
            frame[column] = ""
    for column in NUMERIC & set(frame.columns):
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    return frame


def _json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _num(metric: str, value: float) -> str:
    """``0.931`` -> ``93.1`` (a fraction, in percent); MAE and r with 3 decimals; ``–`` when missing."""
    if value is None or pd.isna(value):
        return "–"
    return f"{value:.3f}" if metric in PLAIN else f"{100 * value:.1f}"


def _ci(metric: str, value: float, low: float, high: float, unit: str = "") -> str:
    """A score with its 95 % interval.

    >>> _ci("ua", 0.931, 0.91, 0.952), _ci("mae", 0.7, 0.65, 0.75), _ci("ua", 0.5, float("nan"), 1)
    ('93.1 [91.0, 95.2]', '0.700 [0.650, 0.750]', '50.0')
    """
    if pd.isna(low) or pd.isna(high):
        return _num(metric, value) + unit
    return f"{_num(metric, value)}{unit} [{_num(metric, low)}, {_num(metric, high)}]"


def _ci_row(row: pd.Series, unit: str = "") -> str:
    return _ci(row["metric"], row["value"], row["low"], row["high"], unit)


def _signed(metric: str, value: float) -> str:
    return f"{value:+.3f}" if metric in PLAIN else f"{100 * value:+.1f}"


def _delta(row: pd.Series) -> str:
    """``+2.1 [+0.4, +3.8]``: Δ (points, for fractions) with its paired 95 % interval."""
    metric = row["metric"]
    return f"{_signed(metric, row['delta'])} [{_signed(metric, row['low'])}, {_signed(metric, row['high'])}]"


def _verdict(row: pd.Series) -> str:
    """better / worse / within noise from the interval of Δ alone: never a gain when it covers 0."""
    if pd.isna(row["low"]) or pd.isna(row["high"]):
        return "within noise"
    return uncertainty.verdict(row["low"], row["high"], row["metric"])


def _p(value: float) -> str:
    if pd.isna(value):
        return "–"
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def _label(metric: str) -> str:
    name = METRIC_NAMES.get(metric, metric)
    return name if metric in PLAIN else f"{name} %"


def _count(value: float) -> str:
    return "?" if pd.isna(value) else str(int(value))


def _budget(value: float, unit: str) -> str:
    return f"{value:g}{unit}"


def _ordered(names, order) -> list[str]:
    order = list(order)
    return sorted(set(names), key=lambda n: (order.index(n) if n in order else len(order), n))


def _sort(rows: pd.DataFrame, column: str, order) -> pd.DataFrame:
    """``rows`` in the order of ``order`` by ``column`` (unknown names last, by name)."""
    ranked = _ordered(rows[column], order)
    return rows.sort_values(column, key=lambda values: values.map(ranked.index), kind="stable")


def _join(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _md(cells: list[str]) -> str:
    """One Markdown table row."""
    return "| " + " | ".join(cells) + " |"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A Markdown table, then a blank line."""
    return [_md(header), "|" + "---|" * len(header), *(_md(r) for r in rows), ""]


def _headline(frame: pd.DataFrame) -> str | None:
    """The metric a table is read in: UA, else MAE, else the first one it has."""
    metrics = list(dict.fromkeys(frame["metric"]))
    return next((m for m in ("ua", "mae") if m in metrics), metrics[0] if metrics else None)


def _row(models: pd.DataFrame, model: str, metric: str) -> pd.Series | None:
    rows = models[(models["model"] == model) & (models["metric"] == metric)]
    return rows.iloc[0] if len(rows) else None


def _cell(models: pd.DataFrame, model: str, metric: str) -> str:
    row = _row(models, model, metric)
    return "–" if row is None else _ci_row(row)


def _comparisons(results: Results, table: str, metric: str | None = None) -> pd.DataFrame:
    """One table of ``comparisons.csv`` in its headline metric (or ``metric``)."""
    rows = results.comparisons[results.comparisons["table"] == table]
    metric = metric or _headline(rows)
    return rows[rows["metric"] == metric]


def _by_verdict(
    rows: pd.DataFrame, column: str, names: dict, with_delta: bool = False
) -> dict[str, list[str]]:
    """The names in ``rows[column]`` grouped by verdict (optionally each with its Δ [interval])."""
    groups: dict[str, list[str]] = {v: [] for v in uncertainty.VERDICTS}
    for _, row in rows.iterrows():
        name = names.get(row[column], row[column])
        groups[_verdict(row)].append(f"{name} (Δ {_delta(row)})" if with_delta else name)
    return groups


def _protocol(table: pd.DataFrame) -> str:
    speakers = table.groupby("split")["speaker"].nunique()
    counts = table["split"].value_counts()
    parts = [f"{s} {speakers.get(s, 0)} speakers / {counts.get(s, 0)} utt" for s in ("train", "dev", "test")]
    corpus = table.attrs.get("corpus", "synthetic")
    kind = {
        "official": "official split",
        "loso": "leave-one-session-out, the session-5 fold (sessions 1-3 train, 4 dev, 5 test)",
        "speakers": "speaker-independent split (actors disjoint, seeded; `splits/`)",
    }[protocols.PROTOCOLS.get(corpus, "official")]
    if corpus.startswith("synthetic"):
        kind = "speaker-independent split"
    return f"{kind} (" + ", ".join(parts) + ")"


def _protocol_cell(row: pd.Series) -> str:
    """``speaker-independent split; folds: main; 3 seeds; 240 test utt.``"""
    seeds = _count(row["n_seeds"])
    seeds = "1 seed (interval: utterances only)" if seeds == "1" else f"{seeds} seeds"
    return f"{row['protocol']}; folds: {row['folds']}; {seeds}; {_count(row['n_test'])} test utt."


def _literature_line(models: pd.DataFrame, corpus: str) -> list[str]:
    """The main model's scores in the metrics this corpus's literature reports, headline first."""
    if corpus.startswith("synthetic"):
        return []  # no literature: the synthetic corpus is a mechanics check
    wanted = protocols.LITERATURE_METRICS.get(corpus, ("ua", "wa"))
    if _row(models, MAIN, "mae") is not None:
        wanted = protocols.LITERATURE_REGRESSION_METRICS
    rows = [(m, _row(models, MAIN, m)) for m in wanted]
    shown = [f"{METRIC_NAMES[m]} {_ci_row(r, '' if m in PLAIN else '%')}" for m, r in rows if r is not None]
    if not shown:
        return []
    return [f"Main model in the metrics the {corpus} literature reports: " + ", ".join(shown) + ".", ""]


SENTIMENT_HEAD = "/sentiment"  # evaluate writes a multi-task model's sentiment head as <model>/sentiment


def _source_models(models: pd.DataFrame, task: str) -> list[str]:
    rows = models[(models["task"] == task) & models["role"].isin(["main", "baseline"])]
    return _ordered(rows.loc[~rows["model"].str.endswith(SENTIMENT_HEAD), "model"], MODEL_NAMES)


def _classification_table(models: pd.DataFrame) -> list[str]:
    """Main model and baselines: UA, WA, weighted F1 with intervals, dev UA, the protocol cell."""
    rows = []
    for name in _source_models(models, "classification"):
        ua = _row(models, name, "ua")
        if ua is not None:
            scores = [_cell(models, name, m) for m in ("ua", "wa", "f1_weighted")]
            rows.append([MODEL_NAMES.get(name, name), *scores, _num("ua", ua["dev"]), _protocol_cell(ua)])
    header = ["model", "UA % [95% interval]", "WA %", "weighted F1 %", "dev UA %", "protocol"]
    return _table(header, rows) if rows else []


def _sentiment_lines(models: pd.DataFrame) -> list[str]:
    """The multi-task models' 3-way sentiment head."""
    lines = []
    heads = models.loc[models["model"].str.endswith(SENTIMENT_HEAD), "model"]
    for name in _ordered(heads.str.removesuffix(SENTIMENT_HEAD), MODEL_NAMES):
        scores = [(m, _row(models, name + SENTIMENT_HEAD, m)) for m in ("ua", "f1_weighted")]
        shown = ", ".join(f"{METRIC_NAMES[m]} {_ci_row(r, '%')}" for m, r in scores if r is not None)
        head = f"{MODEL_NAMES.get(name, name)}, 3-way sentiment head (sign of the sentiment score)"
        lines += [f"{head}: {shown}.", ""]
    return lines


def _regression_table(models: pd.DataFrame) -> list[str]:
    """The regression models: MOSI-style metrics with intervals and the protocol cell."""
    names = _source_models(models, "regression")
    present = set(models.loc[models["model"].isin(names), "metric"])
    metrics = [m for m in REGRESSION_COLUMNS if m in present]
    if not names or not metrics:
        return []
    rows = []
    for name in names:
        first = next(r for r in (_row(models, name, m) for m in metrics) if r is not None)
        rows.append([MODEL_NAMES.get(name, name), *(_cell(models, name, m) for m in metrics)])
        rows[-1].append(_protocol_cell(first))
    title = "Sentiment regression (score in [-3, 3]; CMU-MOSI-style metrics, 95% intervals):"
    return [title, "", *_table(["model", *map(_label, metrics), "protocol"], rows)]


def _source_section(results: Results, source_table: pd.DataFrame) -> list[str]:
    corpus = str(source_table["corpus"].iloc[0])
    lines = [f"## Source domain: `{corpus}`", "", f"Protocol: {_protocol(source_table)}.", ""]
    lines += _literature_line(results.models, source_table.attrs.get("corpus", "synthetic"))
    body = _classification_table(results.models) + _sentiment_lines(results.models)
    body += _regression_table(results.models)
    return lines + (body or ["_No source results (`results/models.csv` missing or empty)._", ""])


def _baselines_section(results: Results) -> list[str]:
    """Main model vs each baseline: Δ with its paired interval, Holm p, verdict, one sentence."""
    rows = _sort(_comparisons(results, "baselines"), "b", MODEL_NAMES)
    if rows.empty:
        return []
    metric = rows["metric"].iloc[0]
    name = METRIC_NAMES.get(metric, metric)
    header = ["baseline", f"baseline {_label(metric)} [95% interval]",
              f"Δ {name} (main − baseline) [95% interval]", "p (Holm)", "verdict"]  # fmt: skip
    table = [
        [
            MODEL_NAMES.get(r["b"], r["b"]),
            _cell(results.models, r["b"], metric),
            *_delta_cells(rows.loc[[i]]),
        ]
        for i, r in rows.iterrows()
    ]
    return ["### Main model vs baselines", "", *_table(header, table), _baseline_sentence(rows, name), ""]


def _baseline_sentence(rows: pd.DataFrame, name: str) -> str:
    """What the main model beats, what beats it, and what it is only within noise of."""
    groups = _by_verdict(rows, "b", MODEL_NAMES)
    parts = []
    if groups["better"]:
        parts.append(f"beats {_join(groups['better'])}")
    if groups["worse"]:
        parts.append(f"is worse than {_join(groups['worse'])}")
    if groups["within noise"]:
        noise = _join(groups["within noise"])
        parts.append(f"is within noise of {noise} (the interval of Δ covers 0: no gain is claimed)")
    return f"In {name}, the main model " + "; ".join(parts) + "."


def _reference_sentence(rows: pd.DataFrame, reference: str, names: dict, metric: str) -> str:
    """Which rows are better than, worse than and within noise of a fixed reference."""
    groups = {v: _join(n) if n else "none" for v, n in _by_verdict(rows, "a", names).items()}
    return (
        f"In {METRIC_NAMES.get(metric, metric)} vs {reference}: better: {groups['better']}; "
        f"worse: {groups['worse']}; within noise (no gain claimed): {groups['within noise']}."
    )


def _delta_cells(matches: pd.DataFrame, reference: bool = False) -> list[str]:
    """Δ [interval], Holm p and verdict of the one comparison in ``matches``."""
    if reference:
        return ["reference", "–", "–"]
    if matches.empty:
        return ["–", "–", "–"]
    row = matches.iloc[0]
    return [_delta(row), _p(row["p_holm"]), _verdict(row)]


def _ablation_section(results: Results) -> list[str]:
    """Each configuration's score and its Δ vs seed 003's cross-attention baseline."""
    rows, models = _comparisons(results, "ablation"), results.models
    extra = models.loc[models["role"] == "ablation", "model"]
    if rows.empty and extra.empty:
        return []
    metric = rows["metric"].iloc[0] if len(rows) else "ua"
    candidates = _ordered({*rows["a"], *extra, "cross_attention"}, ABLATION_ORDER)
    names = [n for n in candidates if _row(models, n, metric) is not None or n in set(rows["a"])]
    table = []
    for model in names:
        score = _row(models, model, metric)
        counts = "–" if score is None else f"{_count(score['n_seeds'])} / {_count(score['n_test'])}"
        delta = _delta_cells(rows[rows["a"] == model], model == "cross_attention")
        table.append([MODEL_NAMES.get(model, model), _cell(models, model, metric), *delta, counts])
    name = METRIC_NAMES.get(metric, metric)
    delta = f"Δ {name} vs cross-attention [95% interval]"
    header = [
        "configuration",
        f"{_label(metric)} [95% interval]",
        delta,
        "p (Holm)",
        "verdict",
        "seeds / test utt.",
    ]
    sentence = _reference_sentence(rows, MODEL_NAMES["cross_attention"], MODEL_NAMES, metric)
    return [
        "### Ablation (vs the cross-attention baseline, seed 003)",
        "",
        *_table(header, table),
        sentence,
        "",
    ]


def _skipped_section(results: Results) -> list[str]:
    """The recipes that did not train, each with what it needs that the run lacks and the fix."""
    rows = results.skipped
    if rows.empty:
        return []
    text = (
        f"{len(rows)} listed recipe(s) did not train: each needs labels or a modality that the "
        "source corpus (or `model.modalities`) lacks, and would have trained that loss on nothing "
        "(`results/skipped.csv`; `train.strict_recipes: true` makes this an error)."
    )
    table = [
        [MODEL_NAMES.get(r["recipe"], r["recipe"]), f"`{r['recipe']}`", r["role"], r["reason"], r["fix"]]
        for _, r in rows.iterrows()
    ]
    header = ["recipe", "name", "role", "why it was skipped", "fix"]
    return ["### Skipped recipes", "", text, "", *_table(header, table)]


def robustness_rows(frame: pd.DataFrame, model: str) -> list[list[str]]:
    """One model's conditions: score [interval], the paired change from clean [interval], verdict."""
    rows = []
    for _, r in frame[frame["model"] == model].iterrows():
        metric, change = r["metric"], ""
        if r["condition"] != "clean":
            low, high = _signed(metric, r["delta_low"]), _signed(metric, r["delta_high"])
            change = f"{_signed(metric, r['delta'])} [{low}, {high}]"
        score = f"{_label(metric)} {_ci(metric, r['value'], r['low'], r['high'])}"
        rows.append([r["condition"], score, change, r["verdict"]])
    return rows


def _robustness_section(results: Results) -> list[str]:
    """Main model and concat baseline with a modality removed or noise in the audio."""
    frame = results.robustness
    if frame.empty:
        return []
    first = frame.iloc[0]
    text = (
        "Test scores of the main model and the concat baseline with each modality removed (the model masks "
        "it) and with white or babble noise added to the test audio at each SNR, re-encoded with the "
        f"model's own audio encoder ({_count(first['n_seeds'])} seeds, {_count(first['n_test'])} test utt.; "
        "Δ: paired change from clean; `results/robustness.csv`)."
    )
    lines = ["## Robustness: missing and noisy modalities", "", text, ""]
    for model in frame["model"].unique():
        lines += [f"**{MODEL_NAMES.get(model, model)}**", ""]
        lines += [*_table(["condition", "score", "Δ vs clean", "verdict"], robustness_rows(frame, model)), ""]
    return lines


def _fold_key(fold: str) -> tuple:
    return (not fold.isdigit(), int(fold) if fold.isdigit() else 0, fold)


def _folds_section(results: Results, corpus: str) -> list[str]:
    """The main model's test scores per protocol fold (mean over seeds) when there are several."""
    folds = results.folds
    test = folds[(folds["split"] == "test") & (folds["model"] == MAIN)]
    names = sorted(set(test["fold"]), key=_fold_key)
    if len(names) < 2:
        return []
    metrics = [m for m in FOLD_METRICS if m in set(test["metric"])]
    means = test.groupby(["fold", "metric"])["value"].mean()
    seeds = test.groupby("fold")["seed"].nunique()
    rows = [[fold, str(seeds[fold]), *(_num(m, means.get((fold, m))) for m in metrics)] for fold in names]
    rows.append(["**all folds [95% interval]**", "", *(_cell(results.models, MAIN, m) for m in metrics)])
    note = "; IEMOCAP fold k tests on session k" if corpus == "iemocap" else ""
    text = ("The main model's test score per fold, mean over its seeds; the last row is the reported number "
            "(mean over folds and seeds) with its 95% interval.")  # fmt: skip
    header = ["fold", "seeds", *map(_label, metrics)]
    return [f"### Protocol folds ({len(names)}{note})", "", text, "", *_table(header, rows)]


def _groups_section(results: Results) -> list[str]:
    """The main model's per-class recall and per-gender / per-speaker UA (descriptive, no intervals)."""
    per_class = results.per_class[results.per_class["model"] == MAIN]
    per_speaker = results.per_speaker[results.per_speaker["model"] == MAIN]
    if per_class.empty and per_speaker.empty:
        return []
    lines = ["### Per class and per speaker (main model)", ""]
    lines += ["Descriptive: mean over folds and seeds, without intervals (small groups); not compared.", ""]
    if len(per_class):
        recalls = [_num("recall", v) for v in per_class["recall"]]
        lines += _table(["", *per_class["class"]], [["recall %", *recalls]])
    return lines + _speaker_table(per_speaker)


def _speaker_table(per_speaker: pd.DataFrame) -> list[str]:
    """Per gender, then the largest speakers by test utterances (at most ``MAX_SPEAKERS``)."""
    if per_speaker.empty:
        return []
    genders = per_speaker[per_speaker["group"] == "gender"]
    speakers = per_speaker[per_speaker["group"] == "speaker"]
    speakers = speakers.sort_values(["n", "name"], ascending=[False, True])
    shown = pd.concat([genders, speakers.head(MAX_SPEAKERS)])
    rows = [[r["group"], r["name"], _count(r["n"]), _num("ua", r["ua"])] for _, r in shown.iterrows()]
    lines = _table(["group", "name", "test utt.", "UA %"], rows)
    if len(speakers) > MAX_SPEAKERS:
        lines += [f"{len(speakers) - MAX_SPEAKERS} more speakers in `results/per_speaker.csv`.", ""]
    return lines


def _gates_section(gates: dict, png_dir: Path, report_dir: Path) -> list[str]:
    """The main model's modality weights, reliable vs unreliable and per emotion (``gates.json``)."""
    if not gates:
        return []
    lines = ["### Reliability gates", ""]
    # reliable vs unreliable needs the corpus's reliability columns (the synthetic corpus's)
    with_drop = [m for m in sorted(gates) if all(k in gates[m] for k in ("reliable", "unreliable", "drop"))]
    if with_drop:
        lines += ["Mean modality weight of the main model on test utterances where the modality is reliable",
                  "vs unreliable (by the corpus's reliability columns):", ""]  # fmt: skip
        rows = [[m, *(f"{gates[m][k]:.3f}" for k in ("reliable", "unreliable")), f"{gates[m]['drop']:+.3f}"]
                for m in with_drop]  # fmt: skip
        lines += _table(["modality", "reliable", "unreliable", "drop"], rows)
    emotions = sorted({e for g in gates.values() for e in g.get("by_emotion", {})})
    if emotions:
        weight = {m: gates[m].get("by_emotion", {}) for m in sorted(gates)}
        rows = [[m, *(f"{w.get(e, float('nan')):.3f}" for e in emotions)] for m, w in weight.items()]
        lines += ["Mean modality weight per emotion:", "", *_table(["modality", *emotions], rows)]
    return [*lines, _image(png_dir / "gates.png", report_dir, "gates"), ""]


def _loading_section(metrics_dir: Path, corpora: dict[str, str]) -> list[str]:
    """What the metadata stage quarantined or repaired, per role (``metrics/metadata.json``);
    ``corpora`` names each role's corpus (the metrics file holds numbers only)."""
    counts = _json(metrics_dir / "metadata.json")
    rows = []
    for role, entry in counts.items():
        issues = {k: v for k, v in entry.items() if k.startswith(("quarantine/", "repaired/"))}
        detail = ", ".join(f"{k.split('/', 1)[1]} {v} ({k.split('/')[0]})" for k, v in sorted(issues.items()))
        corpus = corpora.get(role) or str(entry.get("corpus", "none"))
        rows.append([role, corpus, str(entry.get("utterances")), detail or "none"])
    if not rows:
        return []
    header = ["role", "corpus", "utterances kept", "quarantined / repaired"]
    title = "### Corpus loading (`metrics/metadata.json`, `data/metadata/quarantine.csv`)"
    return [title, "", *_table(header, rows)]


def _image(path: Path, report_dir: Path, alt: str) -> str:
    if not path.is_file():
        return f"_{alt}: not produced in this run_"
    return f"![{alt}]({os.path.relpath(path, report_dir)})"


def _transfer_rows(results: Results, kind: str) -> pd.DataFrame:
    """One kind of ``transfer.csv`` in its headline metric."""
    rows = results.transfer[results.transfer["kind"] == kind]
    return rows[rows["metric"] == _headline(rows)]


def _counts(rows: pd.DataFrame) -> str:
    """``3 seeds; 120 test utt.`` (the most any row of ``rows`` has)."""
    seeds, n_test = _count(rows["n_seeds"].max()), _count(rows["n_test"].max())
    return f"{seeds} seed{'' if seeds == '1' else 's'}; {n_test} test utt."


def _selected(rows: pd.DataFrame, names: dict) -> list[str]:
    return [names.get(s, s) for s in rows.loc[rows["best_by_dev"] == 1, "setting"]]


def _distances(adapt: dict, method: str) -> list[str]:
    """Mean over modalities of the CORAL distance before → after, and the linear CKA kept."""
    modalities = sorted({k.split("/")[2] for k in adapt if k.startswith(f"adapt/{method}/")})
    if not modalities:
        return ["–", "–"]
    mean = {
        name: sum(adapt.get(f"adapt/{method}/{m}/{name}", float("nan")) for m in modalities) / len(modalities)
        for name in ("coral_before", "coral_after", "cka_kept")
    }
    return [f"{mean['coral_before']:.4f} → {mean['coral_after']:.4f}", f"{mean['cka_kept']:.3f}"]


def _across_dims_sentence(adapt: dict) -> str:
    """Why there is no zero-shot row without an adapter: the target's extractors (``extract.target``)
    give other dims than the model's; which modalities' adapters map across dims (plain MLPs)."""
    across = set()
    for key, input_dim in adapt.items():  # adapt/<method>/<modality>/input_dim
        output_dim = adapt.get(key.removesuffix("input_dim") + "output_dim")
        if key.endswith("/input_dim") and output_dim not in (None, input_dim):
            across.add(f"{key.split('/')[2]} {input_dim} → {output_dim}")
    across = sorted(across)
    dims = f" ({_join(across)}: plain MLP adapters)" if across else ""
    return (
        "No row without an adapter: the target's extractors (`extract.target`) give features of other "
        f"dims than the model's{dims}, so the model reads the target only through an adapter."
    )


def _zeroshot_section(results: Results) -> list[str]:
    """Each feature adapter on the target test split, vs no adapter; the dev-selected one marked."""
    rows = _sort(_transfer_rows(results, "zeroshot"), "setting", ADAPTER_NAMES)
    if rows.empty:
        return []
    metric = rows["metric"].iloc[0]
    comparisons = _comparisons(results, "zeroshot", metric)
    table = []
    for _, row in rows.iterrows():
        setting = row["setting"]
        name = ADAPTER_NAMES.get(setting, setting) + (
            " (**selected on dev**)" if row["best_by_dev"] == 1 else ""
        )
        delta = _delta_cells(comparisons[comparisons["a"] == setting], setting == "none")
        table.append(
            [name, _ci_row(row), *delta, _num(metric, row["dev"]), *_distances(results.adapt, setting)]
        )
    header = ["feature adapter", f"target {_label(metric)} [95% interval]", "Δ vs none [95% interval]",
              "p (Holm)", "verdict", f"dev {_label(metric)}",
              "CORAL distance to source, before → after (mean over modalities)",
              "linear CKA kept"]  # fmt: skip
    sentence = _reference_sentence(comparisons, "no adapter", ADAPTER_NAMES, metric)
    if "none" not in set(rows["setting"]):  # seed 002 across extractors: nothing to compare with
        sentence = _across_dims_sentence(results.adapt)
    selected = _selected(rows, ADAPTER_NAMES)
    sentence += f" The target dev split selects {_join(selected)}." if selected else ""
    title = ["### Zero-shot feature adapters", "", f"No target labels; {_counts(rows)}", ""]
    return [*title, *_table(header, table), sentence, ""]


def _swap_section(results: Results) -> list[str]:
    """Seed 002's extractor swap: the cheap extractor's audio mapped by each adapter, and the Δs."""
    rows = _sort(_transfer_rows(results, "swap"), "setting", SWAP_NAMES)
    if rows.empty:
        return []
    metric = rows["metric"].iloc[0]
    text = ("Seed 002's real-time scenario: the main model, unchanged, on the *source* test split with its "
            "audio from the cheap extractor (`extract.audio_swap`) mapped into the model's audio space by an "
            f"adapter trained on the source train split; {_counts(rows)}")  # fmt: skip
    scores = [[SWAP_NAMES.get(r["setting"], r["setting"]), _ci_row(r)] for _, r in rows.iterrows()]
    lines = ["### Extractor swap", "", text, ""]
    lines += _table(["audio features", f"source test {_label(metric)} [95% interval]"], scores)
    comparisons = _comparisons(results, "swap", metric)
    pairs = [
        [
            f"{SWAP_NAMES.get(r['a'], r['a'])} vs {SWAP_NAMES.get(r['b'], r['b'])}",
            *_delta_cells(comparisons.loc[[i]]),
        ]
        for i, r in comparisons.iterrows()
    ]
    header = ["comparison", f"Δ {METRIC_NAMES.get(metric, metric)} [95% interval]", "p (Holm)", "verdict"]
    return lines + (_table(header, pairs) if pairs else [])


@dataclass(frozen=True)
class BudgetKind:
    """A few-shot kind of ``transfer.csv`` and how its section shows it.

    Attributes:
        kind (str): ``kind`` in ``transfer.csv``.
        table (str): its ``table`` in ``comparisons.csv``.
        unit (str): printed after a budget (``10%``, ``3 per class``).
        title (str): the section heading.
    """

    kind: str
    table: str
    unit: str
    title: str


BUDGETS = (
    BudgetKind("fraction", "fewshot", "%", "Few-shot: a fraction of the target train split"),
    BudgetKind("kshot", "kshot", " per class", "k-shot: k labelled target utterances per class"),
)


def _budget_section(results: Results, budget_kind: BudgetKind) -> list[str]:
    """Strategy × budget scores, then per budget the dev-selected strategy and the verdicts vs full."""
    unit = budget_kind.unit
    rows = _transfer_rows(results, budget_kind.kind)
    if rows.empty:
        return []
    metric = rows["metric"].iloc[0]
    strategies = _ordered(rows["setting"], STRATEGY_NAMES)
    budgets = sorted(set(rows["budget"].dropna()))
    scores = []
    for budget in budgets:
        at = rows[rows["budget"] == budget]
        data = f"{_budget(budget, unit)} ({_count(at['n_train'].max())} train utt.)"
        scores.append([data, *(_strategy_cell(at[at["setting"] == s]) for s in strategies)])
    header = ["target data", *(f"{STRATEGY_NAMES.get(s, s)} {_label(metric)}" for s in strategies)]
    text = f"{_counts(rows)} Bold: the strategy the target dev split selects at that budget."
    verdicts = _budget_verdicts(rows, _comparisons(results, budget_kind.table, metric), budgets, unit)
    return [f"### {budget_kind.title}", "", text, "", *_table(header, scores), *verdicts]


def _strategy_cell(rows: pd.DataFrame) -> str:
    if rows.empty:
        return "–"
    row = rows.iloc[0]
    return f"**{_ci_row(row)}**" if row["best_by_dev"] == 1 else _ci_row(row)


def _budget_verdicts(rows: pd.DataFrame, comparisons: pd.DataFrame, budgets: list, unit: str) -> list[str]:
    """Per budget: the dev-selected strategy and each strategy's verdict vs full fine-tuning, with Δs."""
    table = []
    for budget in budgets:
        selected = _selected(rows[rows["budget"] == budget], STRATEGY_NAMES)
        at = comparisons[comparisons["budget"] == budget]
        groups = _by_verdict(at, "a", STRATEGY_NAMES, with_delta=True)
        cells = [", ".join(groups[v]) or "–" for v in uncertainty.VERDICTS]
        table.append([_budget(budget, unit), _join(selected) if selected else "–", *cells])
    full = STRATEGY_NAMES["full"]
    header = ["target data", "selected on dev", f"better than {full}", f"worse than {full}",
              f"within noise of {full} (no gain claimed)"]  # fmt: skip
    return _table(header, table)


TRANSFER_PROTOCOL = (
    "Protocol: the source model on the target test split ({split}). Zero-shot: no target labels, target "
    "features as extracted or mapped by each feature adapter. Few-shot: each strategy trained on the same "
    "stratified, nested fraction (or k per class) of the target train split, early stopping on the target "
    "dev split; each seed draws its own subset. Scores carry 95% intervals, Δs are paired by utterance and "
    "seed, and *selected on dev* marks the setting the target dev split picks within its kind and budget "
    "(the test split plays no part in the choice)."
)


def _transfer_section(
    results: Results, target_table: pd.DataFrame, png_dir: Path, report_dir: Path
) -> list[str]:
    if target_table.empty:
        return ["## Transfer", "", NO_TARGET, ""]
    target_corpus = str(target_table["corpus"].iloc[0])
    lines = [
        f"## Transfer to `{target_corpus}`",
        "",
        TRANSFER_PROTOCOL.format(split=_protocol(target_table)),
        "",
    ]
    body = _zeroshot_section(results) + _swap_section(results)
    for budget_kind in BUDGETS:
        body += _budget_section(results, budget_kind)
    lines += body or ["_No transfer results (`results/transfer.csv` missing or empty)._", ""]
    lines += [_image(png_dir / "fewshot.png", report_dir, "few-shot curve"), ""]
    return [*lines, _image(png_dir / "zeroshot.png", report_dir, "zero-shot adapters"), ""]


def _title_section(source_table: pd.DataFrame) -> list[str]:
    """The title, the synthetic corpus's warning where it applies, and how to read the intervals."""
    lines = ["# mer results summary", ""]
    if str(source_table["corpus"].iloc[0]).startswith("synthetic"):
        lines += [
            "> **Synthetic corpus: a mechanics check, not an emotion-recognition result.** The built-in",
            "> corpus is generated so that fusion must win; these scores show that the pipeline learns",
            "> what it was designed to learn and say nothing about accuracy on real emotional speech.",
            "",
        ]
    return [*lines, INTERVALS, ""]


def _figures_section(png_dir: Path, report_dir: Path) -> list[str]:
    """The main model's confusion matrix and every model's training curves (PNGs)."""
    return [
        "### Confusion matrix and training curves",
        "",
        _image(png_dir / "confusion_source_test.png", report_dir, "confusion matrix"),
        "",
        _image(png_dir / "training_curves.png", report_dir, "training curves"),
        "",
    ]


def _references_section() -> list[str]:
    """Published numbers for orientation, apart from mer's results."""
    return [
        "## Reference numbers from the literature (not mer results)",
        "",
        "These are published results under the protocols named, for orientation only; mer has not",
        "reproduced them here.",
        "",
        "| corpus | system | protocol | reported |",
        "|---|---|---|---|",
        *(f"| {r.corpus} | {r.system} | {r.protocol} | {r.reported} |" for r in REFERENCES),
    ]


def _provenance_section(provenance: dict) -> list[str]:
    """What produced the numbers (``results/provenance.json``): commit, hashes, device, packages."""
    if not provenance:
        return []
    differs = " (code differed from it)" if provenance.get("code_differs_from_commit") else ""
    lines = [
        "",
        "## Provenance",
        "",
        f"- git commit: `{provenance.get('git_commit')}`{differs}",
        f"- code hash: `{provenance.get('code_hash')}` (src/, stages/, dvc.yaml)",
        f"- params hash: `{provenance.get('params_hash')}`",
        f"- device: {provenance.get('device')}",
    ]
    if provenance.get("python"):
        lines.append(f"- python: {provenance['python']}")
    packages = provenance.get("packages", {})
    lines.append("- packages: " + ", ".join(f"{k} {v}" for k, v in packages.items()))
    lines += [f"- encoder {name}: {origin}" for name, origin in provenance.get("encoders", {}).items()]
    return lines


def _corpora(source_table: pd.DataFrame, target_table: pd.DataFrame) -> dict[str, str]:
    """Each role's corpus name (``none`` for an empty table)."""
    tables = {"source": source_table, "target": target_table}
    return {role: str(t["corpus"].iloc[0]) if not t.empty else "none" for role, t in tables.items()}


def build_summary(
    *,
    metrics_dir: str | Path,
    results_dir: str | Path,
    png_dir: str | Path,
    metadata_dir: str | Path,
    out: str | Path,
) -> Path:
    """Write the Markdown summary from the metadata counts, the evaluate stage's results, PNGs and
    tables: one section after another, each its own function."""
    metrics_dir, png_dir, out = Path(metrics_dir), Path(png_dir), Path(out)
    results = Results.load(Path(results_dir))
    source_table = pd.read_parquet(Path(metadata_dir) / "source.parquet")
    target_table = pd.read_parquet(Path(metadata_dir) / "target.parquet")
    report_dir = out.parent
    sections = [
        _title_section(source_table),
        _source_section(results, source_table),
        _baselines_section(results),
        _ablation_section(results),
        _skipped_section(results),
        _robustness_section(results),
        _gates_section(results.gates, png_dir, report_dir),
        _figures_section(png_dir, report_dir),
        _folds_section(results, source_table.attrs.get("corpus", "synthetic")),
        _groups_section(results),
        _loading_section(metrics_dir, _corpora(source_table, target_table)),
        _transfer_section(results, target_table, png_dir, report_dir),
        _references_section(),
        _provenance_section(results.provenance),
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(line for section in sections for line in section) + "\n")
    return out


# ---------------------------------------------------------------------------------------------
# The model card of the main model
# ---------------------------------------------------------------------------------------------

RANDOM_INIT = "random-init"


def _card_metrics(results: Results) -> list[str]:
    main = results.models[results.models["role"] == "main"]
    if main.empty:
        return ["No test metrics of the main model in results/models.csv."]
    first = main.iloc[0]
    lines = [f"Source test split, {_protocol_cell(first)} Mean over seeds, 95% interval in brackets:", ""]
    rows = [[_label(r["metric"]), _ci_row(r)] for _, r in main.iterrows()]
    return lines + _table(["metric", "value"], rows)


def _card_limitations(description: dict, corpus: str) -> list[str]:
    lines = []
    if corpus.startswith("synthetic"):
        lines.append(
            "- **Trained on mer's synthetic corpus**, generated so that each modality carries the emotion "
            "on some utterances only. Its scores show that the pipeline learns; they say nothing about "
            "emotion in real speech, faces or text. Do not use this model on real recordings."
        )
    random = [m for m, e in description["encoders"].items() if e.get("weights") == RANDOM_INIT]
    if random:
        lines.append(
            f"- **Random-init encoders** for {_join(random)}: their architectures with seeded random weights "
            "(no pretrained weights offline). The features carry signal only through training the fusion "
            "model on them. Re-run with real weights (docs/encoders.md) before any real use."
        )
    external = [m for m, e in description["encoders"].items() if e.get("weights") == "external"]
    if external:  # released feature sets (mer.external)
        lines.append(
            f"- **Released features** for {_join(external)} (`external:` files, docs/encoders.md): "
            "`mer predict` cannot compute them for new media, so this model applies only to utterances "
            "that file covers."
        )
    lines += [
        "- Emotion categories are a coarse, culture- and annotator-dependent description. The labels are "
        f"the training corpus's ({_join(description['classes'])}). A prediction is a guess about how "
        "annotators would label the clip, not a fact about the speaker.",
        "- Each modality was seen only as the training corpus records it: its language, microphones, cameras "
        "and speakers. Expect lower accuracy elsewhere; measure before relying on it.",
        "- Not for decisions about people: hiring, policing, health or education.",
    ]
    return lines


def build_model_card(
    *, model_dir: str | Path, results_dir: str | Path, metadata_dir: str | Path, out: str | Path
) -> Path:
    """Write the main model's card from its ``config.json``, the results tables and the metadata:
    intended use, training data and protocol, encoders and weights origin, metrics, robustness,
    limitations, and how to apply it."""
    model_dir, out = Path(model_dir), Path(out)
    description = json.loads((model_dir / "config.json").read_text())
    config = description["model_config"]
    results = Results.load(Path(results_dir))
    table = pd.read_parquet(Path(metadata_dir) / "source.parquet")
    corpus = table.attrs.get("corpus", "synthetic")
    seeds = description["seeds"]
    encoders = [
        [m, f"`{e['model']}`", e.get("weights") or "", f"`{e.get('weights_hash')}`", f"`{e.get('code_hash')}`"]  # noqa: E501
        for m, e in description["encoders"].items()
    ]  # fmt: skip
    lines = [
        f"# Model card: mer main model (`{model_dir}`)",
        "",
        "Written by the report stage from the model's `config.json`, `results/` and the metadata.",
        "",
        "## Intended use",
        "",
        "Research on multimodal emotion recognition: comparing fusion models and encoders, and trying a "
        "trained model on new clips with `mer predict`. It is not meant for decisions about people.",
        "",
        "## Model",
        "",
        f"- Fusion mode `{config['mode']}`, gate `{config['gate']}`, width {config['d_model']}, "
        f"{config['num_heads']} heads, {config['num_cross_layers']} cross-modal layer(s); "
        f"task `{config['task']}`.",
        f"- Modalities: {_join(description['modalities'])}. Any non-empty subset can be given; absent "
        "modalities are masked (docs/models.md says what absence means per fusion mode).",
        f"- Classes: {_join(description['classes'])}.",
        f"- {len(seeds)} training seed(s) ({', '.join(map(str, seeds))}), one `seed<k>.safetensors` each. "
        "`mer predict` averages their class probabilities; `--seed K` uses one.",
        f"- mer {description['mer_version']}, params hash `{description['params_hash']}`.",
        "",
        "## Training data and protocol",
        "",
        f"Corpus `{corpus}`, fold `{description['corpus'].get('fold')}`: {_protocol(table)}.",
        "",
        "## Encoders (frozen; the features the model reads)",
        "",
        *_table(["modality", "encoder", "weights", "weights hash", "preprocessing hash"], encoders),
        "",
        "`mer predict` rebuilds these encoders. It refuses to run when the weights or preprocessing "
        "hash differs from the one recorded here.",
        "",
        "## Metrics",
        "",
        *_card_metrics(results),
        "",
        "## Robustness",
        "",
        *(
            _table(["condition", "score", "Δ vs clean", "verdict"], robustness_rows(results.robustness, MAIN))
            if not results.robustness.empty
            else ["Not measured in this run (no results/robustness.csv)."]
        ),
        "",
        "## Limitations",
        "",
        *_card_limitations(description, corpus),
        "",
        "## How to use",
        "",
        "```",
        f'mer predict {model_dir} clip.wav --text "what was said"',
        f"mer predict {model_dir} clip.mp4",
        f"mer predict {model_dir} --csv list.csv --out predictions.csv",
        "```",
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    return out
