"""Selection strategies and their registry.

Strategies share one signature, ``strategy(request: SelectionRequest) -> np.ndarray`` of pool
indices, and are looked up by name; :func:`select` runs one with the contract checks of
``DESIGN.md``. Importing this package registers the built-in strategies.
"""

from . import random as _random  # noqa: F401  (registers "random")
from . import uncertainty as _uncertainty  # noqa: F401  (registers the uncertainty strategies)
from .registry import (
    STRATEGY_INPUTS,
    Representation,
    SelectionRequest,
    StrategyContractError,
    UnknownStrategyError,
    available_strategies,
    check_strategy_options,
    get_strategy,
    register_strategy,
    select,
    strategy_inputs,
    strategy_needs_probs,
    strategy_options,
)
from .uncertainty import uncertainty_order

__all__ = [
    "STRATEGY_INPUTS",
    "Representation",
    "SelectionRequest",
    "StrategyContractError",
    "UnknownStrategyError",
    "available_strategies",
    "check_strategy_options",
    "get_strategy",
    "register_strategy",
    "select",
    "strategy_inputs",
    "strategy_needs_probs",
    "strategy_options",
    "uncertainty_order",
]
