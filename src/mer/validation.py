"""Declarative value rules for config dataclasses and the error a broken rule raises.

A config class lists its rules in a ``_checks`` class attribute, ``{field: rule}``; both
:mod:`mer.params` (validating ``params.yaml``, naming keys as ``section.key``) and the model
config (:class:`mer.models.config.FusionConfig`, validating itself) apply them with
:func:`check_value`, so each rule is written once.

>>> check_value("fusion.beta", 0.3, in_range(-10.0, 10.0))
>>> check_value("fusion.mode", "sum", one_of("crossmodal", "concat"))
Traceback (most recent call last):
...
mer.validation.ParamsError: fusion.mode: 'sum' is not one of ['crossmodal', 'concat']
"""

from __future__ import annotations

from typing import Any


class ParamsError(ValueError):
    """A config value is missing, unknown, of the wrong type or out of range."""


def in_range(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False) -> dict:
    """Rule: ``lo <= value <= hi`` (``lo < value`` when ``lo_open``); None = unbounded."""
    return {"lo": lo, "hi": hi, "lo_open": lo_open}


def one_of(*options: str) -> dict:
    """Rule: the value is one of ``options``."""
    return {"choices": options}


def check_value(key: str, value: Any, rule: dict) -> None:
    """Raise :class:`ParamsError` naming ``key`` when ``value`` breaks ``rule``. Rules: a range,
    ``one_of``, ``{"each": rule}`` (every list item), ``{"distinct": True}``, ``{"subset_of": names}``."""
    if "each" in rule:
        for i, item in enumerate(value):
            check_value(f"{key}[{i}]", item, rule["each"])
        return
    if "distinct" in rule:
        if len(set(value)) != len(value):
            raise ParamsError(f"{key}: {list(value)!r} lists a name twice")
        return
    if "subset_of" in rule:
        bad = [v for v in value if v not in rule["subset_of"]]
        if bad or len(set(value)) != len(value):
            raise ParamsError(
                f"{key}: {list(value)!r} must list distinct values from {list(rule['subset_of'])}"
            )
        return
    if "choices" in rule:
        if value not in rule["choices"]:
            raise ParamsError(f"{key}: {value!r} is not one of {list(rule['choices'])}")
        return
    lo, hi = rule["lo"], rule["hi"]
    if lo is not None and (value <= lo if rule["lo_open"] else value < lo):
        raise ParamsError(
            f"{key}: {value!r} is out of range (must be {'>' if rule['lo_open'] else '>='} {lo})"
        )
    if hi is not None and value > hi:
        raise ParamsError(f"{key}: {value!r} is out of range (must be <= {hi})")
