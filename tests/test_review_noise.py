"""``mer.review``'s ``### Verdicts``: the workspace against a revision, paired by utterance and seed.

A tiny git + DVC repository (one stage writing planted predictions of a ``fusion`` and a
``concat`` model from ``params.yaml``) is committed, changed and reproduced in the workspace; the
verdicts then come from the base's predictions in DVC's cache. Also: the base's predictions not in
the cache, a base in the layout before per-fold predictions, no workspace predictions, and the
in-memory comparison (regression, nothing to pair).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from mer.review import IDENTICAL, compare_model, review_markdown, verdict_section, verdict_table

BIN = Path(sys.executable).parent
SECTION = re.compile(r"^### (\w+)\n\n(.*?)(?=^### |\Z)", re.MULTILINE | re.DOTALL)
VERDICTS = {"better", "worse", "within noise"}

# seeds 0-2 of each model (as train.seeds; with two seeds the seed term has about one degree of
# freedom and even a large change can be within noise); a share `noise` of the 400 utterances
# predicted wrong, drawn independently per (model, seed, draw)
GENERATE = """\
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

params = yaml.safe_load(Path("params.yaml").read_text())
labels = np.arange(400) % 4
for salt, model in enumerate(("fusion", "concat")):
    for seed in (0, 1, 2):
        rng = np.random.default_rng([seed, params["draw"], salt])
        wrong = rng.random(len(labels)) < params["noise"]
        preds = np.where(wrong, (labels + rng.integers(1, 4, len(labels))) % 4, labels)
        out = Path("data/predictions/source") / model / {folder}
        out.mkdir(parents=True, exist_ok=True)
        frame = pd.DataFrame({{"utt_id": [f"u{{i:03d}}" for i in range(len(labels))],
                              "label_id": labels, "pred_id": preds}})
        frame.to_parquet(out / f"seed{{seed}}.parquet", index=False)
"""
NEW_LAYOUT = GENERATE.format(folder='"main"')  # <model>/<fold>/seed<k>.parquet
OLD_LAYOUT = GENERATE.format(folder='""')  # <model>/seed<k>.parquet, before per-fold predictions
DVC_YAML = """\
stages:
  predict:
    cmd: python predict.py
    deps: [predict.py]
    params: [noise, draw]
    outs:
      - data/predictions/source/fusion
      - data/predictions/source/concat
"""


def sh(args: list[str], cwd: Path) -> str:
    """Run a command with the venv's tools first on PATH; fail with its output."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout}{result.stderr}"
    return result.stdout


def reproduce(repo: Path, script: str | None = None, **params: float) -> None:
    """Update ``predict.py`` / ``params.yaml`` and ``dvc repro`` (nothing committed)."""
    if script is not None:
        (repo / "predict.py").write_text(script)
    if params:
        current = yaml.safe_load((repo / "params.yaml").read_text())
        (repo / "params.yaml").write_text(yaml.safe_dump({**current, **params}))
    sh(["dvc", "repro", "-q"], repo)


def make_repo(path: Path, script: str) -> Path:
    """A git + DVC repository whose HEAD holds the predictions of ``script`` at 40 % wrong."""
    path.mkdir()
    sh(["git", "init", "-q"], path)
    sh(["git", "config", "user.name", "mer test"], path)
    sh(["git", "config", "user.email", "mer@example.com"], path)
    sh(["dvc", "init", "-q"], path)
    sh(["dvc", "config", "core.analytics", "false"], path)
    (path / "dvc.yaml").write_text(DVC_YAML)
    (path / "params.yaml").write_text("noise: 0.4\ndraw: 0\n")
    reproduce(path, script)
    sh(["git", "add", "-A"], path)
    sh(["git", "commit", "-q", "-m", "base"], path)
    return path


@pytest.fixture(scope="module")
def base_repo(tmp_path_factory) -> Path:
    return make_repo(tmp_path_factory.mktemp("noise") / "repo", NEW_LAYOUT)


@pytest.fixture
def repo(base_repo, tmp_path) -> Path:
    """A fresh copy of the committed base repository (its DVC cache included)."""
    return Path(shutil.copytree(base_repo, tmp_path / "repo", symlinks=True))


def verdict_rows(markdown: str) -> dict[tuple[str, str], list[str]]:
    """``{(model, metric): [base, new, delta, interval, verdict]}`` of the verdict table."""
    rows = [line for line in markdown.splitlines() if line.startswith("| ")][1:]
    cells = [[cell.strip() for cell in row.strip("|").split("|")] for row in rows]
    return {(row[0], row[1]): row[2:] for row in cells}


def test_planted_improvement_is_better_and_comes_first(repo):
    reproduce(repo, noise=0.05, draw=1)  # 40 % -> 5 % wrong on 400 utterances

    markdown = review_markdown("HEAD", repo / "reports/review", repo=repo)
    sections = dict(SECTION.findall(markdown))
    assert next(iter(sections)) == "Verdicts" and {"Metrics", "Params", "Plots"} <= set(sections), markdown
    body = sections["Verdicts"]
    assert "paired by utterance and seed" in body and "mer.uncertainty" in body, body
    assert "1 fold, 3 seeds, 400 test utterances" in body, body
    rows = verdict_rows(body)
    assert set(rows) == {("fusion", "UA"), ("fusion", "WA"), ("fusion", "weighted F1"), ("concat", "UA")}
    for base, new, delta, interval, verdict in rows.values():
        low, high = (float(bound) for bound in interval.strip("[]").split(","))
        assert verdict in VERDICTS and low <= float(delta) <= high
        assert float(new) - float(base) == pytest.approx(float(delta), abs=2e-3)
    base, new, delta, interval, verdict = rows[("fusion", "UA")]
    assert verdict == "better" and float(base) < 0.7 < 0.9 < float(new), rows
    assert "Traceback" not in markdown


@pytest.mark.parametrize(
    ("change", "expected"),
    [({}, {IDENTICAL}), ({"draw": 1}, {"within noise"})],  # same predictions / only other seeds' luck
    ids=["unchanged", "reseeded"],
)
def test_no_real_change_is_never_better(repo, change, expected):
    if change:
        reproduce(repo, **change)
    rows = verdict_rows(verdict_section("HEAD", repo, n_boot=300))
    assert len(rows) == 4 and {row[-1] for row in rows.values()} == expected, rows


def test_base_not_in_cache_says_how_to_get_it(repo):
    reproduce(repo, noise=0.05)
    shutil.rmtree(repo / ".dvc/cache")

    text = verdict_section("HEAD", repo)
    assert text.startswith("No verdict") and "not in the local DVC cache" in text, text
    assert "git checkout HEAD; dvc repro" in text and "git stash" in text and "|" not in text, text

    sh(["dvc", "remote", "add", "-d", "store", str(repo.parent / "remote")], repo)
    text = verdict_section("HEAD", repo)
    assert "dvc pull" in text and "not in the local DVC cache" in text, text


def test_no_workspace_predictions_says_run_dvc_repro(repo):
    shutil.rmtree(repo / "data/predictions")
    text = verdict_section("HEAD", repo)
    assert text.startswith("No verdict") and "run `dvc repro` first" in text, text


def test_base_before_per_fold_predictions_explains_no_verdict(tmp_path):
    repo = make_repo(tmp_path / "old", OLD_LAYOUT)
    assert (repo / "data/predictions/source/fusion/seed0.parquet").is_file()
    reproduce(repo, NEW_LAYOUT)

    text = verdict_section("HEAD", repo)
    assert text.startswith("No verdict") and "predates per-fold predictions" in text, text
    assert "dvc repro" in text and "|" not in text, text


def regression_frames(noise: float, salt: int) -> dict[str, dict[int, pd.DataFrame]]:
    """``{fold: {seed: frame}}`` of a sentiment regressor with prediction noise sd ``noise``."""
    truth = np.linspace(-3, 3, 300)
    out: dict[str, dict[int, pd.DataFrame]] = {}
    for fold in ("1", "2"):
        for seed in (0, 1, 2):
            rng = np.random.default_rng([seed, salt, int(fold)])
            out.setdefault(fold, {})[seed] = pd.DataFrame({
                "utt_id": [f"{fold}-{i}" for i in range(len(truth))], "label_id": 0,
                "sentiment": truth, "sentiment_pred": truth + rng.normal(0, noise, len(truth)),
            })  # fmt: skip
    return out


def test_regression_uses_its_headline_metrics_and_lower_mae_is_better():
    result = compare_model("fusion", regression_frames(1.5, 0), regression_frames(0.3, 1), n_boot=300)
    assert list(result.comparisons) == ["mae", "pearson", "acc2_non0"]
    mae = result.comparisons["mae"]
    assert mae.delta < 0 and mae.verdict == "better" and (mae.n_folds, mae.n_seeds, mae.n_test) == (2, 3, 600)
    assert result.comparisons["pearson"].verdict == "better"


def test_nothing_to_pair_is_a_line_not_a_traceback():
    base = regression_frames(1.0, 0)
    other = {fold: {seed + 10: frame for seed, frame in seeds.items()} for fold, seeds in base.items()}
    text = verdict_table("main", {"fusion": base}, {"fusion": other, "late": base}, n_boot=50)
    assert "`fusion`: not compared (fold 1: no seed in common" in text, text
    assert "`late`: new in the workspace" in text, text
