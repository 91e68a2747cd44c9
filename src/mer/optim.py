"""AdamW and a reduce-on-plateau learning rate for mer's training loops, without ``torch.optim``.

Why not ``torch.optim``: building or stepping any of its optimizers imports ``torch._dynamo``
(``Optimizer.add_param_group``, ``zero_grad`` and ``step`` are wrapped to disable it), 1.5-2.0 s
of every training process on the 2-core CPU (``python -X importtime``; bench/PROFILE.md, fourth
round), paid by each of the default run's ~19 training processes and by every training stage the
tests run. The update here is torch's multi-tensor AdamW (``foreach=True``) op for op, and the
schedule is ``ReduceLROnPlateau``'s: tests/test_optim.py holds both to torch's bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch


class AdamW:
    """AdamW (decoupled weight decay; Loshchilov & Hutter, 2019) over one parameter group.

    As in ``torch.optim.AdamW``: a parameter's moments and step count start at its first
    gradient, and a step skips (no decay, no update) every parameter whose ``grad`` is None.
    ``weight_decay=0`` is Adam. ``lr`` may be changed between steps (:class:`ReduceOnPlateau`).
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor],
        lr: float,
        weight_decay: float = 0.01,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        self.params = list(params)
        if not self.params:
            raise ValueError("AdamW got no parameters to train")
        if lr <= 0 or weight_decay < 0 or not (0 <= betas[0] < 1 and 0 <= betas[1] < 1) or eps <= 0:
            raise ValueError(f"AdamW: bad hyper-parameters lr={lr}, weight_decay={weight_decay}, "
                             f"betas={betas}, eps={eps}")  # fmt: skip
        self.lr = float(lr)
        self.weight_decay = float(weight_decay)
        self.betas = (float(betas[0]), float(betas[1]))
        self.eps = float(eps)
        self.state: dict[int, tuple[list[float], torch.Tensor, torch.Tensor]] = {}  # id -> step, m, v

    def zero_grad(self) -> None:
        """Drop every gradient (``set_to_none``, torch's default)."""
        for param in self.params:
            param.grad = None

    @torch.no_grad()
    def step(self) -> None:
        """One update of every parameter that has a gradient."""
        groups: dict[tuple, list[tuple]] = {}  # (device, dtype) -> (param, grad, step, m, v)
        for param in self.params:
            if param.grad is None:
                continue
            if param.grad.is_sparse:
                raise RuntimeError("AdamW does not support sparse gradients")
            if id(param) not in self.state:
                self.state[id(param)] = ([0.0], *(torch.zeros_like(param) for _ in range(2)))
            group = groups.setdefault((param.device, param.dtype), [])
            group.append((param, param.grad, *self.state[id(param)]))
        beta1, beta2 = self.betas
        for entries in groups.values():
            columns = (list(column) for column in zip(*entries, strict=True))
            params, grads, steps, exp_avgs, exp_avg_sqs = columns
            for step in steps:
                step[0] += 1.0
            if self.weight_decay != 0:
                torch._foreach_mul_(params, 1 - self.lr * self.weight_decay)
            torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
            torch._foreach_mul_(exp_avg_sqs, beta2)
            torch._foreach_addcmul_(exp_avg_sqs, grads, grads, 1 - beta2)
            step_sizes = [(self.lr / (1 - beta1 ** step[0])) * -1 for step in steps]
            bias_correction2_sqrt = [(1 - beta2 ** step[0]) ** 0.5 for step in steps]
            denominators = torch._foreach_sqrt(exp_avg_sqs)
            torch._foreach_div_(denominators, bias_correction2_sqrt)
            torch._foreach_add_(denominators, self.eps)
            torch._foreach_addcdiv_(params, exp_avgs, denominators, step_sizes)


class ReduceOnPlateau:
    """Multiply the optimizer's ``lr`` by ``factor`` after more than ``patience`` epochs without a
    better score: ``torch.optim.lr_scheduler.ReduceLROnPlateau`` with its defaults (relative
    threshold 1e-4, no cooldown, no floor) in mode ``max`` or ``min``."""

    def __init__(
        self,
        optimizer: AdamW,
        mode: str = "max",
        factor: float = 0.1,
        patience: int = 10,
        threshold: float = 1e-4,
    ) -> None:
        if mode not in ("max", "min"):
            raise ValueError(f"ReduceOnPlateau mode must be max or min, not {mode!r}")
        if not 0 < factor < 1:
            raise ValueError(f"ReduceOnPlateau factor must be in (0, 1), not {factor}")
        self.optimizer = optimizer
        self.mode, self.factor, self.patience, self.threshold = mode, factor, patience, threshold
        self.best = -math.inf if mode == "max" else math.inf
        self.bad_epochs = 0

    def _is_better(self, score: float) -> bool:
        if self.mode == "max":
            return score > self.best * (self.threshold + 1.0)
        return score < self.best * (1.0 - self.threshold)

    def step(self, score: float) -> None:
        """Record one epoch's score; reduce the learning rate after too many without progress."""
        score = float(score)
        if self._is_better(score):
            self.best, self.bad_epochs = score, 0
        else:
            self.bad_epochs += 1
        if self.bad_epochs > self.patience:
            new_lr = self.optimizer.lr * self.factor
            if self.optimizer.lr - new_lr > 1e-8:  # torch's eps: changes smaller than it are ignored
                self.optimizer.lr = new_lr
            self.bad_epochs = 0
