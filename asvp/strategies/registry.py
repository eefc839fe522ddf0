"""Strategy registry, the common request type, and the contract every selection obeys.

Every selection strategy is a plain function ``strategy(request: SelectionRequest) -> np.ndarray``
registered under a name with :func:`register_strategy` (in the style of timm's
``@register_model``). Callers look strategies up by name and should go through :func:`select`,
which validates the request, runs the strategy and checks its output against the contract of
``DESIGN.md`` ("Contracts other parts rely on"): pool indices (never positions), no index twice,
none already labelled, exactly ``min(budget, len(pool_ids))`` of them, dtype int64.

The ``needs_probs`` flag of an entry tells a pipeline whether the strategy reads
``request.probs``, so that it can skip scoring the pool (a full forward pass) for strategies such
as ``random`` that do not need it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

__all__ = [
    "SelectionRequest",
    "StrategyContractError",
    "StrategyFn",
    "UnknownStrategyError",
    "available_strategies",
    "get_strategy",
    "register_strategy",
    "select",
    "strategy_needs_probs",
]


@dataclass(frozen=True)
class SelectionRequest:
    """Everything a strategy may use to make one round's selection.

    Attributes:
        pool_ids: int64 pool indices of the unlabelled candidates, in the order of the rows of
            ``probs``. Strategies return elements of this array, never positions into it.
        labeled: int64 pool indices already labelled (disjoint from ``pool_ids``).
        budget: number of indices to select this round; a strategy returns
            ``min(budget, len(pool_ids))`` of them.
        rng: the cell's random generator; the only source of randomness a strategy may use, so
            that a resumed run makes exactly the selections of an uninterrupted one.
        probs: ``len(pool_ids) x C`` softmax outputs of the model or proxy that selects (torch
            tensor on any device, or numpy array), rows aligned with ``pool_ids``; ``None`` for
            strategies that do not need them.
    """

    pool_ids: np.ndarray
    labeled: np.ndarray
    budget: int
    rng: np.random.Generator
    probs: torch.Tensor | np.ndarray | None = None


StrategyFn = Callable[[SelectionRequest], np.ndarray]


@dataclass(frozen=True)
class _Entry:
    fn: StrategyFn
    needs_probs: bool


_REGISTRY: dict[str, _Entry] = {}


class UnknownStrategyError(KeyError, ValueError):
    """An unknown strategy name. A ``KeyError`` (a failed lookup) and a ``ValueError`` (bad
    configuration value), so callers may catch either; the message names the value and lists the
    registered names."""

    def __str__(self) -> str:  # KeyError would otherwise print the message quoted
        return str(self.args[0]) if self.args else ""


class StrategyContractError(RuntimeError):
    """A strategy returned a selection that breaks the contract (a bug in the strategy)."""


def register_strategy(
    name: str, *, needs_probs: bool = False
) -> Callable[[StrategyFn], StrategyFn]:
    """Decorator registering ``fn`` as the strategy ``name``.

    Args:
        name: the name used in grid files and by :func:`get_strategy`.
        needs_probs: whether the strategy reads ``request.probs`` (the pool's softmax outputs).

    Registering a name twice with a different function is an error (it would silently replace a
    strategy); re-registering the same function (e.g. after a module reload) replaces the entry.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"strategy name must be a non-empty string, got {name!r}")

    def decorator(fn: StrategyFn) -> StrategyFn:
        old = _REGISTRY.get(name)
        if old is not None and _qualified(old.fn) != _qualified(fn):
            raise ValueError(
                f"strategy {name!r} is already registered to {_qualified(old.fn)}; "
                f"refusing to replace it with {_qualified(fn)}"
            )
        _REGISTRY[name] = _Entry(fn=fn, needs_probs=bool(needs_probs))
        return fn

    return decorator


def _qualified(fn: Callable) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


def _entry(name: str) -> _Entry:
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise UnknownStrategyError(
            f"unknown strategy {name!r}; allowed: {', '.join(available_strategies())}"
        ) from None


def get_strategy(name: str) -> StrategyFn:
    """The strategy function registered as ``name``; :class:`UnknownStrategyError` if none."""
    return _entry(name).fn


def strategy_needs_probs(name: str) -> bool:
    """Whether the strategy ``name`` reads ``request.probs`` (so the pool must be scored)."""
    return _entry(name).needs_probs


def available_strategies() -> list[str]:
    """The registered strategy names, sorted."""
    return sorted(_REGISTRY)


def _int_ids(value: object, field: str) -> np.ndarray:
    arr = np.asarray(value)
    if arr.ndim != 1:
        raise ValueError(f"{field} must be 1-D, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{field} must hold integer pool indices, got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


def _validate_request(name: str, request: SelectionRequest) -> tuple[np.ndarray, np.ndarray]:
    """Check the request; return ``pool_ids`` and ``labeled`` as int64 arrays."""
    if not isinstance(request, SelectionRequest):
        raise TypeError(f"expected a SelectionRequest, got {type(request).__name__}")
    pool = _int_ids(request.pool_ids, "pool_ids")
    labeled = _int_ids(request.labeled, "labeled")
    budget = request.budget
    if isinstance(budget, bool) or not isinstance(budget, int | np.integer):
        raise ValueError(f"budget must be an int, got {budget!r}")
    if budget < 0:
        raise ValueError(f"budget must be >= 0, got {budget}")
    if not isinstance(request.rng, np.random.Generator):
        raise ValueError(f"rng must be a numpy.random.Generator, got {type(request.rng).__name__}")
    uniq, counts = np.unique(pool, return_counts=True)
    if uniq.size != pool.size:
        raise ValueError(f"pool_ids contains duplicates, e.g. {uniq[counts > 1][:5].tolist()}")
    overlap = np.intersect1d(pool, labeled)
    if overlap.size:
        raise ValueError(
            f"pool_ids and labeled intersect in {overlap.size} indices, e.g. {overlap[:5].tolist()}"
        )
    probs = request.probs
    if probs is None:
        if strategy_needs_probs(name):
            raise ValueError(
                f"strategy {name!r} needs probs (the pool's softmax outputs), got None"
            )
    else:
        shape = tuple(probs.shape)
        if len(shape) != 2:
            raise ValueError(f"probs must be 2-D (len(pool_ids) x C), got shape {shape}")
        if shape[0] != pool.size:
            raise ValueError(
                f"probs has {shape[0]} rows but pool_ids has {pool.size} entries; "
                "rows must be aligned with pool_ids"
            )
    return pool, labeled


def _check_selection(
    name: str, selected: object, pool: np.ndarray, labeled: np.ndarray, budget: int
) -> np.ndarray:
    out = np.asarray(selected)
    if out.ndim != 1 or (out.size and not np.issubdtype(out.dtype, np.integer)):
        raise StrategyContractError(
            f"strategy {name!r} must return a 1-D integer array, got shape {out.shape} "
            f"dtype {out.dtype}"
        )
    out = out.astype(np.int64, copy=False)
    expected = min(budget, pool.size)
    if out.size != expected:
        raise StrategyContractError(
            f"strategy {name!r} returned {out.size} indices, expected {expected} "
            f"(budget {budget}, pool of {pool.size})"
        )
    if np.unique(out).size != out.size:
        raise StrategyContractError(f"strategy {name!r} returned an index more than once")
    already = np.intersect1d(out, labeled)
    if already.size:
        raise StrategyContractError(
            f"strategy {name!r} returned already labelled indices, e.g. {already[:5].tolist()}"
        )
    outside = np.setdiff1d(out, pool)
    if outside.size:
        raise StrategyContractError(
            f"strategy {name!r} returned indices not in pool_ids, e.g. {outside[:5].tolist()}"
        )
    return out


def select(name: str, request: SelectionRequest) -> np.ndarray:
    """Run the strategy ``name`` on ``request`` with the shared contract checks.

    Validates the request (``ValueError`` naming the offending value: negative budget, ``probs``
    rows not matching ``pool_ids``, ``pool_ids`` intersecting ``labeled``, duplicate pool ids,
    missing ``probs`` for a strategy that needs them), then checks the strategy's output
    (:class:`StrategyContractError`): exactly ``min(budget, len(pool_ids))`` distinct elements
    of ``pool_ids``, none already labelled.

    Returns:
        the selected pool indices, int64, in the strategy's pick order.
    """
    fn = get_strategy(name)
    pool, labeled = _validate_request(name, request)
    return _check_selection(name, fn(request), pool, labeled, int(request.budget))
