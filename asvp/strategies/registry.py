"""Strategy registry, the common request type, and the contract every selection obeys.

Every selection strategy is a plain function ``strategy(request: SelectionRequest) -> np.ndarray``
registered under a name with :func:`register_strategy` (in the style of timm's
``@register_model``). Callers look strategies up by name and should go through :func:`select`,
which validates the request, runs the strategy and checks its output against the contract of
``docs/design.md`` ("Contracts other parts rely on"): pool indices (never positions), no index
twice, none already labelled, exactly ``min(budget, len(pool_ids))`` of them, dtype int64.

Each entry declares the inputs it reads (:data:`STRATEGY_INPUTS`): ``probs`` (the selecting
model's softmax outputs on the pool), ``embeddings`` (that model's penultimate embeddings of the
pool and of the labelled set) and ``features`` (the cell's feature representation: the frozen
pre-trained features, or ASVP's updated ones). A pipeline computes only what the strategy reads,
so that ``random`` costs no forward pass at all.

Strategies may take keyword-only options (``badge``'s none, ``probcover``'s ``delta``, ...), given
in the grid file as ``{name: ..., options: {...}}``, each declared once on the keyword-only
parameter with its type and range (``max_clusters: Annotated[int, Range(ge=1)] = 500``, read by
:mod:`asvp.options`); :func:`check_strategy_options` checks them against those declarations
(``validate``, the preflight and :func:`select` all call it), so no strategy body checks its
own options. One option is declared here for every strategy (:class:`CommonOptions`):
``candidates: N`` selects among a seeded random subset of ``N`` unlabelled candidates (the
official code's partitioned BADGE drew 320,000 candidates), drawn from ``request.rng`` before
the strategy runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Annotated

import numpy as np
import torch

from ..options import Option, Range, check_options, declared_options
from .rows import Rows, whole_pool_or_nothing

__all__ = [
    "CANDIDATES_OPTION",
    "STRATEGY_INPUTS",
    "CommonOptions",
    "Representation",
    "SelectionRequest",
    "StrategyContractError",
    "StrategyFn",
    "UnknownStrategyError",
    "available_strategies",
    "check_strategy_options",
    "declared_strategy_options",
    "get_strategy",
    "nothing_to_choose",
    "pool_ids_at",
    "register_strategy",
    "select",
    "strategy_inputs",
    "strategy_needs_probs",
    "strategy_options",
]

#: The inputs a strategy may read from a :class:`SelectionRequest`.
STRATEGY_INPUTS = ("probs", "embeddings", "features")

#: The option every strategy accepts: select among a seeded random subset of the candidates.
CANDIDATES_OPTION = "candidates"


@dataclass(frozen=True)
class Representation:
    """Row vectors of the unlabelled candidates and of the labelled set, in one space.

    Attributes:
        pool: ``len(pool_ids) x D``, rows aligned with ``SelectionRequest.pool_ids``.
        labeled: ``len(labeled) x D``, rows aligned with ``SelectionRequest.labeled``.
    """

    pool: Rows
    labeled: Rows


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
        embeddings: the selecting model's penultimate embeddings (the input of its last
            linear layer: the backbone output for a fine-tuned model, the hidden layer of the
            proxy MLP), for the pool and the labelled set.
        features: the cell's feature representation of the pool and the labelled set: the
            frozen pre-trained backbone's features, or ASVP's re-extracted ones after an update.
        num_classes: the dataset's number of classes, when known (ProbCover's purity-based
            radius clusters the features into this many clusters).
    """

    pool_ids: np.ndarray
    labeled: np.ndarray
    budget: int
    rng: np.random.Generator
    probs: Rows | None = None
    embeddings: Representation | None = None
    features: Representation | None = None
    num_classes: int | None = None


StrategyFn = Callable[[SelectionRequest], np.ndarray]


@dataclass(frozen=True)
class _Entry:
    fn: StrategyFn
    inputs: frozenset[str]


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
    name: str, *, needs: Iterable[str] = ()
) -> Callable[[StrategyFn], StrategyFn]:
    """Decorator registering ``fn`` as the strategy ``name``.

    Args:
        name: the name used in grid files and by :func:`get_strategy`.
        needs: the request fields the strategy reads, a subset of :data:`STRATEGY_INPUTS`.

    ``fn(request, **options)`` takes its options as keyword-only parameters, each annotated
    with its type and range (``Annotated[int, Range(ge=1)]``, see :mod:`asvp.options`), with
    defaults except where an option has no sensible default (``replay``'s ``order`` file).

    Registering a name twice with a different function is an error (it would silently replace a
    strategy); re-registering the same function (e.g. after a module reload) replaces the entry.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"strategy name must be a non-empty string, got {name!r}")
    inputs = frozenset(needs)
    unknown = sorted(inputs - set(STRATEGY_INPUTS))
    if unknown:
        raise ValueError(
            f"strategy {name!r} needs unknown inputs {unknown}; allowed: {STRATEGY_INPUTS}"
        )

    def decorator(fn: StrategyFn) -> StrategyFn:
        old = _REGISTRY.get(name)
        if old is not None and _qualified(old.fn) != _qualified(fn):
            raise ValueError(
                f"strategy {name!r} is already registered to {_qualified(old.fn)}; "
                f"refusing to replace it with {_qualified(fn)}"
            )
        _REGISTRY[name] = _Entry(fn=fn, inputs=inputs)
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


def strategy_inputs(name: str) -> frozenset[str]:
    """The request fields the strategy ``name`` reads (a subset of :data:`STRATEGY_INPUTS`)."""
    return _entry(name).inputs


def strategy_needs_probs(name: str) -> bool:
    """Whether the strategy ``name`` reads ``request.probs`` (so the pool must be scored)."""
    return "probs" in strategy_inputs(name)


@dataclass(frozen=True)
class CommonOptions:
    """The options every strategy accepts, handled by :func:`select` before it runs.

    Attributes:
        candidates: select among a seeded random subset of this many unlabelled candidates
            (all of them when ``None`` or when the pool is not larger).
    """

    candidates: Annotated[int | None, Range(ge=1)] = None


def declared_strategy_options(name: str) -> dict[str, Option]:
    """The declared options of strategy ``name``: ``candidates`` first, then the keyword-only
    parameters of its function with their types, ranges and defaults."""
    return {**declared_options(CommonOptions), **declared_options(get_strategy(name))}


def strategy_options(name: str) -> dict[str, object]:
    """The options of strategy ``name`` with their defaults (``inspect.Parameter.empty`` for a
    required one), ``candidates`` included."""
    return {key: option.default for key, option in declared_strategy_options(name).items()}


def check_strategy_options(name: str, options: Mapping[str, object]) -> dict[str, object]:
    """Check ``options`` for strategy ``name`` against its declarations; return them as given.

    Raises :class:`asvp.options.OptionsError` (a ``ValueError``) naming the strategy and, for
    every problem, the option, its value and what is expected: an unknown option (listing the
    allowed ones with their defaults), a missing required one, a value of the wrong type or out
    of range (``strategy 'typiclust': max_clusters: got 0; expected an integer >= 1``). The
    values are returned unconverted, as the run keys were computed from them.
    """
    given = dict(options)
    check_options(declared_strategy_options(name), given, f"strategy {name!r}")
    return given


def pool_ids_at(request: SelectionRequest, positions: np.ndarray) -> np.ndarray:
    """The pool ids (int64) at ``positions`` of ``request.pool_ids``: what a strategy returns."""
    return np.asarray(request.pool_ids, dtype=np.int64)[positions]


def nothing_to_choose(request: SelectionRequest) -> np.ndarray | None:
    """The selection when the request leaves nothing to choose (a budget of 0, an empty pool,
    or a budget covering the pool: see :func:`whole_pool_or_nothing`); ``None`` otherwise."""
    pool_ids = np.asarray(request.pool_ids, dtype=np.int64)
    size = min(int(request.budget), pool_ids.size)
    return whole_pool_or_nothing(pool_ids, size) if size in (0, pool_ids.size) else None


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
    needs = strategy_inputs(name)
    for field in STRATEGY_INPUTS:
        value = getattr(request, field)
        if value is None:
            if field in needs:
                raise ValueError(f"strategy {name!r} needs {field}, got None")
        elif field == "probs":
            _check_rows(value, "probs", "pool_ids", pool.size)
        else:
            _check_rows(value.pool, f"{field}.pool", "pool_ids", pool.size)
            _check_rows(value.labeled, f"{field}.labeled", "labeled", labeled.size)
    return pool, labeled


def _check_rows(rows: Rows, field: str, ids_name: str, count: int) -> None:
    shape = tuple(rows.shape)
    if len(shape) != 2:
        raise ValueError(f"{field} must be 2-D (len({ids_name}) x columns), got shape {shape}")
    if shape[0] != count:
        raise ValueError(
            f"{field} has {shape[0]} rows but {ids_name} has {count} entries; "
            f"rows must be aligned with {ids_name}"
        )


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


def select(
    name: str, request: SelectionRequest, options: Mapping[str, object] | None = None
) -> np.ndarray:
    """Run the strategy ``name`` on ``request`` with the shared contract checks.

    ``options`` are the strategy's options (checked by :func:`check_strategy_options`);
    ``candidates: N`` first narrows the request to ``N`` unlabelled candidates drawn uniformly
    from ``request.rng`` (all of them when the pool is not larger; ``ValueError`` when ``N`` is
    below the budget of a larger pool).

    Validates the request (``ValueError`` naming the offending value: negative budget, ``probs``
    rows not matching ``pool_ids``, ``pool_ids`` intersecting ``labeled``, duplicate pool ids,
    missing ``probs`` for a strategy that needs them), then checks the strategy's output
    (:class:`StrategyContractError`): exactly ``min(budget, len(pool_ids))`` distinct elements
    of ``pool_ids``, none already labelled.

    Returns:
        the selected pool indices, int64, in the strategy's pick order.
    """
    fn = get_strategy(name)
    checked = check_strategy_options(name, options or {})
    candidates = checked.pop(CANDIDATES_OPTION, None)
    pool, labeled = _validate_request(name, request)
    narrowed = _narrow_to_candidates(request, pool, candidates)
    return _check_selection(name, fn(narrowed, **checked), pool, labeled, int(request.budget))


def _narrow_to_candidates(
    request: SelectionRequest, pool: np.ndarray, candidates: int | None
) -> SelectionRequest:
    """The request restricted to a seeded random subset of ``candidates`` pool rows.

    ``ValueError`` when fewer candidates than the round's picks would be drawn (the strategy
    could not return ``min(budget, len(pool_ids))`` of them).
    """
    if candidates is None or candidates >= pool.size:
        return request
    if candidates < request.budget:
        raise ValueError(
            f"option {CANDIDATES_OPTION}: got {candidates}; expected at least the budget "
            f"({request.budget}) or null: a round picks among its candidates"
        )
    rows = np.sort(request.rng.choice(pool.size, size=candidates, replace=False))

    def take(values: Rows) -> Rows:
        index = torch.from_numpy(rows).to(values.device) if torch.is_tensor(values) else rows
        return values[index]

    def take_pool(rep: Representation | None) -> Representation | None:
        return None if rep is None else Representation(take(rep.pool), rep.labeled)

    return replace(
        request,
        pool_ids=pool[rows],
        probs=None if request.probs is None else take(request.probs),
        embeddings=take_pool(request.embeddings),
        features=take_pool(request.features),
    )
