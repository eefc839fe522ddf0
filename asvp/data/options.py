"""Checks of dataset option values, raised where the value enters (the grid's YAML).

Each error names the dataset, the option, the value and what is expected: TypeError for a
value of the wrong type, ValueError for one out of range. Booleans are refused where a number
is expected (YAML ``true`` is not a count).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def _message(dataset: str, option: str, value: Any, expected: str) -> str:
    return f"dataset {dataset!r}: option {option}={value!r}; expected {expected}"


def check_int(dataset: str, option: str, value: Any, minimum: int) -> int:
    """An integer ``>= minimum``."""
    expected = f"an integer >= {minimum}"
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(_message(dataset, option, value, expected))
    if value < minimum:
        raise ValueError(_message(dataset, option, value, expected))
    return value


def check_fraction(dataset: str, option: str, value: Any) -> float:
    """A number in (0, 1]."""
    expected = "a number in (0, 1]"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(_message(dataset, option, value, expected))
    if not 0 < value <= 1:
        raise ValueError(_message(dataset, option, value, expected))
    return float(value)


def check_path(dataset: str, option: str, value: Any, root: Path) -> Path:
    """A non-empty path; a relative one is taken relative to the data root ``root``."""
    expected = "a non-empty path (absolute, or relative to the data root)"
    if not isinstance(value, str | os.PathLike):
        raise TypeError(_message(dataset, option, value, expected))
    if not str(value):
        raise ValueError(_message(dataset, option, value, expected))
    return (root / Path(value).expanduser()).resolve()
