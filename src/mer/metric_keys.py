"""The keys of the evaluate stage's declared metrics, defined once.

:mod:`mer.evaluate` writes ``metrics/{source,ablation,transfer}.json`` with these keys and
:mod:`mer.sweep` reads them back by name; nothing else assembles a key by hand. A key is a flat
slash-separated path (``dvc metrics diff`` and ``dvc exp show`` keep ``/`` as is), and a number
with a 95 % interval has two more keys, :func:`low` and :func:`high`.

- ``metrics/source.json``: the main model's headline metrics ``main(m)`` (:data:`HEADLINE`), its
  dev score ``main(dev(primary))`` and design sizes ``main(N_SEEDS)`` / ``N_FOLDS`` / ``N_TEST``;
  each baseline's ``baseline(name, primary)`` and, for a baseline of the main model's task,
  ``baseline(name, delta(primary))`` (main minus baseline); a baseline the source corpus cannot
  support has ``baseline(name, SKIPPED)`` = 1 instead (its reason: ``results/skipped.csv``).
- ``metrics/ablation.json``: ``ablation(row, "ua")`` and ``ablation(row, delta("ua"))`` (row minus
  the cross-attention reference); a skipped variant ``ablation(row, SKIPPED)`` = 1.
- ``metrics/transfer.json``: ``transfer(kind, budget, reference, primary)`` (``none`` zero-shot,
  ``full`` fine-tuning) and the dev-selected setting's ``best_by_dev(kind, budget, setting, m)``
  with ``m`` its primary metric and ``delta(primary)`` vs the reference.

Standard library only: the sweep collector imports it without the evaluate stage's dependencies.

>>> main("ua"), low(main("ua")), high(main("ua")), main(dev("ua")), main(N_SEEDS)
('main/ua', 'main/ua_low', 'main/ua_high', 'main/dev_ua', 'main/n_seeds')
>>> baseline("concat", delta("ua")), ablation("micl", delta("ua")), baseline("regression", SKIPPED)
('baselines/concat/delta_ua', 'micl/delta_ua', 'baselines/regression/skipped')
>>> transfer("zeroshot", "", "none", "ua"), best_by_dev("kshot", "3", "head", delta("ua"))
('zeroshot/none/ua', 'kshot/3/best_by_dev/head/delta_ua')
"""

from __future__ import annotations

SOURCE_FILE = "metrics/source.json"
ABLATION_FILE = "metrics/ablation.json"
TRANSFER_FILE = "metrics/transfer.json"

MAIN_MODEL = "fusion"  # the model whose numbers are the ``main/`` keys
# the metrics of the main model in metrics/source.json, and the one each model is read in
HEADLINE = {"classification": ("ua", "wa", "f1_weighted"), "regression": ("mae", "pearson", "acc2_non0")}
PRIMARY = {"classification": "ua", "regression": "mae"}

MAIN = "main"
BASELINES = "baselines"
BEST_BY_DEV = "best_by_dev"
N_SEEDS, N_FOLDS, N_TEST = "n_seeds", "n_folds", "n_test"
SKIPPED = "skipped"  # 1 for a recipe its stage skipped (the metrics files hold numbers only)
LOW, HIGH = "_low", "_high"


def low(key: str) -> str:
    """The lower bound of ``key``'s 95 % interval."""
    return key + LOW


def high(key: str) -> str:
    """The upper bound of ``key``'s 95 % interval."""
    return key + HIGH


def delta(metric: str) -> str:
    """A paired difference in ``metric`` (``delta_ua``)."""
    return f"delta_{metric}"


def dev(metric: str) -> str:
    """``metric`` on the dev split (``dev_ua``), the score that selects."""
    return f"dev_{metric}"


def main(metric: str) -> str:
    """The main model's ``metric`` (``main/ua``)."""
    return f"{MAIN}/{metric}"


def baseline(name: str, metric: str) -> str:
    """Baseline ``name``'s ``metric`` (``baselines/concat/ua``)."""
    return f"{BASELINES}/{name}/{metric}"


def ablation(row: str, metric: str) -> str:
    """Ablation row ``row``'s ``metric`` (``micl/ua``)."""
    return f"{row}/{metric}"


def transfer(kind: str, budget: str, setting: str, metric: str) -> str:
    """A transfer setting's ``metric``: ``zeroshot/none/ua`` (no budget), ``fraction/10/full/ua``."""
    prefix = f"{kind}/{budget}" if budget else kind
    return f"{prefix}/{setting}/{metric}"


def best_by_dev(kind: str, budget: str, setting: str, metric: str) -> str:
    """The dev-selected setting's ``metric`` (``fraction/10/best_by_dev/dann/ua``)."""
    return transfer(kind, budget, f"{BEST_BY_DEV}/{setting}", metric)
