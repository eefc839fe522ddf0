"""Selection strategies and their registry.

Strategies share one signature, ``strategy(request: SelectionRequest) -> np.ndarray`` of pool
indices, and are looked up by name; :func:`select` runs one with the contract checks of
``docs/design.md``; options are declared on the strategy functions and checked through
:mod:`asvp.options`. Row helpers shared by the strategies are in :mod:`.rows`. Importing this
package registers the built-in strategies.
"""

# Importing a strategy module registers its strategies.
from . import activeft as _activeft  # noqa: F401  (activeft_self, activeft_al)
from . import badge as _badge  # noqa: F401  (badge)
from . import kcenter as _kcenter  # noqa: F401  (coreset, coreset_self)
from . import probcover as _probcover  # noqa: F401  (probcover)
from . import random as _random  # noqa: F401  (random)
from . import replay as _replay  # noqa: F401  (replay)
from . import typiclust as _typiclust  # noqa: F401  (typiclust)
from . import uncertainty as _uncertainty  # noqa: F401  (margin, least_confidence, entropy)
from .kcenter import k_center_greedy
from .registry import (
    STRATEGY_INPUTS,
    Representation,
    SelectionRequest,
    StrategyContractError,
    UnknownStrategyError,
    available_strategies,
    check_strategy_options,
    declared_strategy_options,
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
    "declared_strategy_options",
    "get_strategy",
    "k_center_greedy",
    "register_strategy",
    "select",
    "strategy_inputs",
    "strategy_needs_probs",
    "strategy_options",
    "uncertainty_order",
]
