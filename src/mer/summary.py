"""The report stage: ``reports/summary.md``, the results a person reads, built by ``dvc repro``.

Every number is printed with its protocol beside it; reference numbers from the literature are
marked as references, never mixed with mer's results; synthetic-corpus scores are labelled as a
mechanics check.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pandas as pd

from mer import protocols

# Published numbers under honest protocols (../shared/corpora.md); references, not mer results.
LOSO = "leave-one-session-out, 5 folds"
REFERENCES = (
    ("IEMOCAP 4-class", "frozen WavLM Base+ + small head (SUPERB ER)", LOSO, "accuracy ≈ 68.7%"),
    ("IEMOCAP 4-class", "frozen WavLM Large + small head (SUPERB ER)", LOSO, "accuracy ≈ 70.6%"),
    ("MELD 7-class", "text-only RoBERTa with dialogue context", "official split", "weighted F1 ≈ 64–66"),
    ("MELD 7-class", "multimodal systems", "official split", "weighted F1 ≈ 65–69"),
    ("CMU-MOSI", "Self-MM (MMSA, 5 seeds)", "official split", "Acc-2 (non0) 84.8, MAE 0.724, Corr 0.789"),
)  # fmt: skip

MODEL_NAMES = {
    "fusion": "main model (fusion section)",
    "concat": "early fusion (concat)",
    "late": "late fusion",
    "ensemble": "early + late ensemble",
    "multitask": "ensemble + sentiment head (multi-task)",
    "text": "text only",
    "audio": "audio only",
    "video": "video only",
    "regression": "cross-attention regression (seed 002)",
}
ADAPTER_NAMES = {
    "none": "none (target features as extracted)",
    "seed002": "seed 002 (MSE on random pairs)",
    "coral": "CORAL (moment matching, residual)",
    "mmd": "MMD (residual)",
    "adversarial": "adversarial (domain classifier, residual)",
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


def _folds_section(metrics_dir: Path) -> list[str]:
    """Per-fold and averaged scores of the protocol folds (IEMOCAP leave-one-session-out)."""
    path = metrics_dir / "folds.json"
    folds = json.loads(path.read_text()) if path.is_file() else {}
    names = sorted({k.split("/")[1] for k in folds if k.startswith("fold/")})
    if not names:
        return []
    keys = [
        k for k in ("ua", "wa", "f1_weighted", "mae", "pearson", "acc2_non0") if f"folds/mean/{k}" in folds
    ]
    lines = [f"### Protocol folds ({len(names)}; IEMOCAP fold k tests on session k)", "",
             "| fold | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]  # fmt: skip
    for name in names:
        cells = [f"{folds.get(f'fold/{name}/{k}', float('nan')):.4f}" for k in keys]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    means = [f"{folds[f'folds/mean/{k}']:.4f} ± {folds[f'folds/std/{k}']:.4f}" for k in keys]
    return [*lines, "| **mean ± std over folds** | " + " | ".join(means) + " |", ""]


def _literature_line(source: dict, corpus: str) -> list[str]:
    """The main model's scores in the metrics this corpus's literature reports, headline first."""
    names = {"ua": "UA", "wa": "WA", "f1_weighted": "weighted F1", "mae": "MAE", "pearson": "Pearson r",
             "acc2_has0": "Acc-2 has0", "f1_has0": "F1 has0", "acc2_non0": "Acc-2 non0", "f1_non0": "F1 non0",
             "acc7": "Acc-7"}  # fmt: skip
    if corpus.startswith("synthetic"):
        return []  # no literature: the synthetic corpus is a mechanics check
    wanted = protocols.LITERATURE_METRICS.get(corpus, ("ua", "wa"))
    if "source/test/mae" in source:
        wanted = protocols.LITERATURE_REGRESSION_METRICS
    shown = []
    for metric in wanted:
        if f"source/test/{metric}" in source:
            value = source[f"source/test/{metric}"]
            shown.append(
                f"{names[metric]} {value:.3f}"
                if metric in ("mae", "pearson")
                else f"{names[metric]} {_pm(source, f'source/test/{metric}')}%"
            )
    if not shown:
        return []
    return [f"Main model in the metrics the {corpus} literature reports: " + ", ".join(shown) + ".", ""]


def _loading_section(metrics_dir: Path) -> list[str]:
    """What the metadata stage quarantined or repaired, per role (``metrics/metadata.json``)."""
    path = metrics_dir / "metadata.json"
    counts = json.loads(path.read_text()) if path.is_file() else {}
    rows = []
    for role, entry in counts.items():
        issues = {k: v for k, v in entry.items() if k.startswith(("quarantine/", "repaired/"))}
        detail = ", ".join(f"{k.split('/', 1)[1]} {v} ({k.split('/')[0]})" for k, v in sorted(issues.items()))
        rows.append(f"| {role} | {entry.get('corpus')} | {entry.get('utterances')} | {detail or 'none'} |")
    if not rows:
        return []
    header = "| role | corpus | utterances kept | quarantined / repaired |"
    title = "### Corpus loading (`metrics/metadata.json`, `data/metadata/quarantine.csv`)"
    return [title, "", header, "|---|---|---|---|", *rows, ""]


def _pct(value: float) -> str:
    return f"{100 * value:.1f}"


def _pm(metrics: dict, key: str) -> str:
    """``93.1 ± 0.4`` (percent) when the std over seeds is there, else ``93.1``."""
    std = metrics.get(f"{key}_std")
    return _pct(metrics[key]) + (f" ± {_pct(std)}" if std is not None else "")


def _image(path: Path, report_dir: Path, alt: str) -> str:
    if not path.is_file():
        return f"_{alt}: not produced in this run_"
    return f"![{alt}]({os.path.relpath(path, report_dir)})"


def build_summary(
    metrics_dir: str | Path, png_dir: str | Path, metadata_dir: str | Path, out: str | Path
) -> Path:
    """Write the Markdown summary from the metrics files, PNGs and metadata tables."""
    metrics_dir, png_dir, out = Path(metrics_dir), Path(png_dir), Path(out)
    report_dir = out.parent
    source = json.loads((metrics_dir / "source.json").read_text())
    transfer = json.loads((metrics_dir / "transfer.json").read_text())
    adapt_path = metrics_dir / "adapt.json"
    adapt = json.loads(adapt_path.read_text()) if adapt_path.is_file() else {}
    source_table = pd.read_parquet(Path(metadata_dir) / "source.parquet")
    target_table = pd.read_parquet(Path(metadata_dir) / "target.parquet")
    corpus = str(source_table["corpus"].iloc[0])
    synthetic = corpus.startswith("synthetic")
    provenance = source.get("provenance", {})

    lines = ["# mer results summary", ""]
    if synthetic:
        lines += [
            "> **Synthetic corpus: a mechanics check, not an emotion-recognition result.** The built-in",
            "> corpus is generated so that fusion must win; these scores show that the pipeline learns",
            "> what it was designed to learn and say nothing about accuracy on real emotional speech.",
            "",
        ]
    seeds = source.get("source/test/n_seeds", 1)
    lines += [f"## Source domain: `{corpus}`", "", f"Protocol: {_protocol(source_table)}; "
              f"mean ± std over {seeds} training seed(s).", ""]  # fmt: skip
    lines += _literature_line(source, source_table.attrs.get("corpus", "synthetic"))
    lines += ["| model | UA % | WA % | weighted F1 % | macro F1 % | protocol |", "|---|---|---|---|---|---|"]
    names = {key.split("/")[3] for key in source if key.startswith("source/test/baselines/")}
    order = list(MODEL_NAMES)
    baselines = {
        name: f"source/test/baselines/{name}"
        for name in sorted(names, key=lambda n: order.index(n) if n in order else len(order))
    }
    models = {"fusion": "source/test"} | baselines
    classifiers = {name: prefix for name, prefix in models.items() if f"{prefix}/ua" in source}
    for name, prefix in classifiers.items():
        values = [_pm(source, f"{prefix}/{m}") for m in ("ua", "wa", "f1_weighted", "f1_macro")]
        lines.append(f"| {MODEL_NAMES.get(name, name)} | " + " | ".join(values) + f" | {corpus} test |")
    gains = []
    if "source/test/gain_over_best_unimodal/ua" in source:
        gain = 100 * source["source/test/gain_over_best_unimodal/ua"]
        gains.append(f"{gain:+.1f} UA points over the best unimodal model")
    if "source/test/gain_over_concat/ua" in source:
        gains.append(f"{100 * source['source/test/gain_over_concat/ua']:+.1f} over concatenation")
    if gains:
        lines += ["", "The main model scores " + ", ".join(gains) + "."]
    recalls = [
        f"{k.rsplit('/', 1)[1]} {_pct(v)}%" for k, v in source.items() if k.startswith("source/test/recall/")
    ]
    if recalls:
        lines += ["", "Per-class recall of the main model: " + ", ".join(recalls) + "."]
    sentiment = [n for n, p in classifiers.items() if f"{p}/sentiment/ua" in source]
    for name in sentiment:
        prefix = classifiers[name]
        ua, f1 = _pm(source, f"{prefix}/sentiment/ua"), _pm(source, f"{prefix}/sentiment/f1_weighted")
        lines += [
            "",
            f"{MODEL_NAMES.get(name, name)}, 3-way sentiment head (sign of the sentiment score): "
            f"UA {ua}%, weighted F1 {f1}%.",
        ]
    regressors = {name: prefix for name, prefix in models.items() if f"{prefix}/mae" in source}
    if regressors:
        lines += ["", "Sentiment regression (score in [-3, 3]; CMU-MOSI-style metrics):", ""]
        lines += ["| model | MAE | Pearson r | Acc-2 has0 % | Acc-2 non0 % | F1 non0 % | Acc-7 % |",
                  "|---|---|---|---|---|---|---|"]  # fmt: skip
        for name, prefix in regressors.items():
            cells = [f"{source[f'{prefix}/mae']:.3f}", f"{source[f'{prefix}/pearson']:.3f}"]
            cells += [_pm(source, f"{prefix}/{m}") for m in ("acc2_has0", "acc2_non0", "f1_non0", "acc7")]
            lines.append(f"| {MODEL_NAMES.get(name, name)} | " + " | ".join(cells) + " |")
    ablation_md = metrics_dir / "ablation.md"
    if ablation_md.is_file():
        table = ablation_md.read_text().split("\n", 2)[-1].strip()
        lines += ["", "### Ablation (`metrics/ablation.md`)", "", table, ""]

    gate_keys = sorted({k.split("/")[3] for k in source if k.startswith("source/test/gates/")})
    if gate_keys:
        lines += ["### Reliability gates"]
        # reliable vs unreliable needs the corpus's reliability columns (the synthetic corpus's)
        with_drop = [m for m in gate_keys if f"source/test/gates/{m}/drop" in source]
        if with_drop:
            lines += [
                "",
                "Mean modality weight of the main model on test utterances where the modality is reliable",
                "vs unreliable (by the corpus's reliability columns):",
                "",
                "| modality | reliable | unreliable | drop |",
                "|---|---|---|---|",
            ]
        for modality in with_drop:
            g = {c: source[f"source/test/gates/{modality}/{c}"] for c in ("reliable", "unreliable", "drop")}
            lines.append(f"| {modality} | {g['reliable']:.3f} | {g['unreliable']:.3f} | {g['drop']:+.3f} |")
        emotions = sorted({k.rsplit("/", 1)[1] for k in source if "/by_emotion/" in k})
        by_emotion = [
            f"| {modality} | "
            + " | ".join(
                f"{source.get(f'source/test/gates/{modality}/by_emotion/{e}', float('nan')):.3f}"
                for e in emotions
            )
            + " |"
            for modality in gate_keys
        ]
        lines += ["", "Mean modality weight per emotion:", "", "| modality | " + " | ".join(emotions) + " |",
                  "|---|" + "---|" * len(emotions), *by_emotion]  # fmt: skip
        lines += ["", _image(png_dir / "gates.png", report_dir, "gates"), ""]
    lines += ["### Confusion matrix and training curves", ""]
    lines += [_image(png_dir / "confusion_source_test.png", report_dir, "confusion matrix"), ""]
    lines += [_image(png_dir / "training_curves.png", report_dir, "training curves"), ""]
    lines += _folds_section(metrics_dir)
    lines += _loading_section(metrics_dir)

    if target_table.empty:
        lines += [
            "## Transfer",
            "",
            "No target corpus (`corpora.target: none`): adapt and transfer were skipped.",
            "",
        ]
        return _finish(lines, out, provenance)
    target_corpus = str(target_table["corpus"].iloc[0])
    lines += [f"## Transfer to `{target_corpus}`", ""]
    lines += [
        f"Protocol: the source model (first training seed) on the target test split "
        f"({_protocol(target_table)}). Zero-shot: no target labels, target features as extracted or "
        "mapped by each feature adapter. Few-shot: each strategy trained on the same stratified, nested "
        "fraction (or k per class) of the target train split, early stopping on the target dev split, "
        "mean ± std over `transfer.seeds` (each seed draws its own subset).",
        "",
    ]
    zeroshot = {k.split("/")[2]: v for k, v in transfer.items() if re.fullmatch(r"target/zeroshot/\w+/ua", k)}
    if zeroshot:
        lines += [
            "| zero-shot feature adapter | target UA % | CORAL distance to source, before → after "
            "(mean over modalities) | linear CKA kept |",
            "|---|---|---|---|",
        ]
        for method, ua in sorted(zeroshot.items(), key=lambda item: list(ADAPTER_NAMES).index(item[0])):
            distances = "– | –"
            modalities = sorted({k.split("/")[2] for k in adapt if k.startswith(f"adapt/{method}/")})
            if modalities:
                mean = {
                    name: sum(adapt[f"adapt/{method}/{m}/{name}"] for m in modalities) / len(modalities)
                    for name in ("coral_before", "coral_after", "cka_kept")
                }
                distances = f"{mean['coral_before']:.4f} → {mean['coral_after']:.4f} | {mean['cka_kept']:.3f}"
            lines.append(f"| {ADAPTER_NAMES.get(method, method)} | {_pct(ua)} | {distances} |")
        lines.append("")
    swap = {k.split("/")[2]: v for k, v in transfer.items() if re.fullmatch(r"target/swap/\w+/ua", k)}
    if swap:
        lines += [
            "Extractor swap (seed 002's real-time scenario): the main model, unchanged, on the *source* test "
            "split with its audio from the cheap extractor (`extract.audio_swap`) mapped into the model's "
            "audio space by an adapter trained on the source train split:",
            "",
            "| audio features | source test UA % |",
            "|---|---|",
        ]
        names = {
            "original": "the model's own extractor (reference)",
            "seed002": "cheap → adapter (seed 002, random pairs)",
            "paired": "cheap → adapter (paired frames)",
        }
        lines += [f"| {names.get(m, m)} | {_pct(ua)} |" for m, ua in swap.items()] + [""]
    for kind, unit in (("fewshot", "%"), ("kshot", " per class")):
        budgets = sorted({int(k.split("/")[2]) for k in transfer if k.startswith(f"target/{kind}/")})
        if not budgets:
            continue
        strategies = [s for s in STRATEGY_NAMES if f"target/{kind}/{budgets[0]}/{s}/ua" in transfer]
        lines += ["| target data | " + " | ".join(f"{STRATEGY_NAMES[s]} UA %" for s in strategies) + " |"]
        lines += ["|---|" + "---|" * len(strategies)]
        for budget in budgets:
            row = [_pm(transfer, f"target/{kind}/{budget}/{s}/ua") for s in strategies]
            lines.append(f"| {budget}{unit} | " + " | ".join(row) + " |")
        lines.append("")
    lines += [_image(png_dir / "fewshot.png", report_dir, "few-shot curve"), ""]
    lines += [_image(png_dir / "zeroshot.png", report_dir, "zero-shot adapters"), ""]

    return _finish(lines, out, provenance)


def _finish(lines: list[str], out: Path, provenance: dict) -> Path:
    """The references and provenance at the end; write the file."""
    lines += ["## Reference numbers from the literature (not mer results)", ""]
    lines += [
        "These are published results under the protocols named, for orientation only; mer has not",
        "reproduced them here.",
        "",
    ]
    lines += ["| corpus | system | protocol | reported |", "|---|---|---|---|"]
    lines += [f"| {c} | {s} | {p} | {r} |" for c, s, p, r in REFERENCES]

    if provenance:
        lines += ["", "## Provenance", ""]
        differs = " (code differed from it)" if provenance.get("code_differs_from_commit") else ""
        lines += [f"- git commit: `{provenance.get('git_commit')}`{differs}"]
        lines += [f"- code hash: `{provenance.get('code_hash')}` (src/, stages/, dvc.yaml)"]
        lines += [
            f"- params hash: `{provenance.get('params_hash')}`",
            f"- device: {provenance.get('device')}",
        ]
        packages = provenance.get("packages", {})
        lines += ["- packages: " + ", ".join(f"{k} {v}" for k, v in packages.items())]
        for name, origin in provenance.get("encoders", {}).items():
            lines.append(f"- encoder {name}: {origin}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    return out
