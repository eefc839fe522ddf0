"""One way to declare and check options: types and ranges written next to the option.

Every option a user can set (a strategy's keyword, a dataset loader's keyword, a backbone's
keyword, a PED setting, a field of a config dataclass) is declared once, as a keyword-only
parameter or a dataclass field whose annotation carries its constraints with
:class:`typing.Annotated`::

    def typiclust(request, *, max_clusters: Annotated[int, Range(ge=1)] = 500): ...

    @dataclass(frozen=True)
    class ProxyConfig:
        epochs: Annotated[int, Range(ge=1)] = 50

:func:`declared_options` reads those declarations; :func:`check_options` and
:meth:`Option.check` check values against them. The grid file checker, the strategy registry,
the dataset and backbone registries and the indicator settings all go through here, so that
``asvp-bench validate`` refuses an out-of-range option with its key, value and allowed range
before anything is submitted, and no strategy body re-checks its own options.

Types are strict, as YAML users expect: an ``int`` option refuses ``true`` and ``2.5``; a
``float`` option accepts an integer (``lr: 1`` is ``1.0``) and refuses non-finite numbers.
Supported annotations: ``int``, ``float``, ``bool``, ``str``, :class:`pathlib.Path` (a
non-empty string), ``Literal[...]``, ``X | None``, ``tuple[X, ...]`` and ``dict[str, X]``.
This module imports nothing heavy (no torch), so the grid checker stays fast.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

__all__ = [
    "REQUIRED",
    "Annotated",
    "Increasing",
    "Length",
    "Option",
    "OptionError",
    "OptionsError",
    "Range",
    "check_options",
    "check_value",
    "declared_options",
    "describe",
]

#: The default of an option that has none (it must be given).
REQUIRED: Any = inspect.Parameter.empty


class OptionError(ValueError):
    """One bad option value: ``key`` (dotted path below the options' owner), the value given
    and the words for what is expected."""

    def __init__(self, key: str, value: Any, expected: str) -> None:
        self.key, self.value, self.expected = key, value, expected
        super().__init__(f"{key}: got {value!r}; expected {expected}")


class OptionsError(ValueError):
    """Every problem found in one set of options (unknown, missing and bad values), together."""

    def __init__(self, owner: str, problems: list[OptionError]) -> None:
        self.owner, self.problems = owner, problems
        super().__init__(f"{owner}: " + "; ".join(str(p) for p in problems))


@dataclass(frozen=True)
class Range:
    """A numeric range: ``Range(ge=1)`` is ``>= 1``, ``Range(gt=0, le=1)`` is ``(0, 1]``.

    Applied to a number, or to every number of a ``tuple[...]`` option.
    """

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def accepts(self, value: float) -> bool:
        return (
            (self.ge is None or value >= self.ge)
            and (self.gt is None or value > self.gt)
            and (self.le is None or value <= self.le)
            and (self.lt is None or value < self.lt)
        )

    def describe(self) -> str:
        low = self.ge if self.ge is not None else self.gt
        high = self.le if self.le is not None else self.lt
        if low is not None and high is not None:
            left = "[" if self.ge is not None else "("
            right = "]" if self.le is not None else ")"
            return f"in {left}{_number(low)}, {_number(high)}{right}"
        if low is not None:
            return (">= " if self.ge is not None else "> ") + _number(low)
        if high is not None:
            return ("<= " if self.le is not None else "< ") + _number(high)
        return "any value"


@dataclass(frozen=True)
class Increasing:
    """A list whose items strictly increase (budgets, milestones)."""

    def accepts(self, value: tuple) -> bool:
        return all(a < b for a, b in zip(value, value[1:], strict=False))

    def describe(self) -> str:
        return "strictly increasing"


@dataclass(frozen=True)
class Length:
    """A list of exactly ``items`` items (an RGB mean or standard deviation: 3)."""

    items: int

    def accepts(self, value: tuple) -> bool:
        return len(value) == self.items

    def describe(self) -> str:
        return f"of {self.items} items"


WHOLE_LIST_CONSTRAINTS = (Increasing, Length)
"""Constraints on a list as a whole; the others apply to each of its items."""

Constraint = Range | Increasing | Length


@dataclass(frozen=True)
class Option:
    """One declared option: its name, type annotation (constraints stripped), constraints and
    default (:data:`REQUIRED` when it has none)."""

    name: str
    annotation: Any
    constraints: tuple[Constraint, ...] = ()
    default: Any = REQUIRED

    @property
    def required(self) -> bool:
        """Whether the option must be given (it has no default)."""
        return self.default is REQUIRED

    def expected(self) -> str:
        """Words for an acceptable value: ``an integer >= 1``, ``a number in (0, 1]``."""
        words = describe(self.annotation)
        limits = [c.describe() for c in self.constraints]
        if not limits:
            return words
        null = " or null" if _nullable(self.annotation) else ""
        return f"{words.removesuffix(null)} {', '.join(limits)}{null}"

    def describe_default(self) -> str:
        """``name (default value)``, or ``name (required)``: for lists of allowed options."""
        return (
            f"{self.name} (required)"
            if self.required
            else f"{self.name} (default {self.default!r})"
        )

    def check(self, value: Any, key: str | None = None) -> Any:
        """``value`` converted to this option's type; :class:`OptionError` if it is not one,
        or if it breaks a constraint (the message gives the allowed range)."""
        key = key or self.name
        converted = check_value(value, self.annotation, key, self.expected())
        if converted is None:
            return None
        for constraint in self.constraints:
            items = converted if isinstance(converted, tuple) else (converted,)
            ok = (
                constraint.accepts(converted)
                if isinstance(constraint, WHOLE_LIST_CONSTRAINTS)
                else all(constraint.accepts(item) for item in items)
            )
            if not ok:
                raise OptionError(key, value, self.expected())
        return converted


def declared_options(owner: Callable[..., Any] | type) -> dict[str, Option]:
    """The options ``owner`` declares: the keyword-only parameters of a function, or the fields
    of a dataclass, with their annotations, ``Annotated`` constraints and defaults."""
    hints = typing.get_type_hints(owner, include_extras=True)
    if dataclasses.is_dataclass(owner):
        return {
            f.name: _option(f.name, hints[f.name], _field_default(f))
            for f in dataclasses.fields(owner)
        }
    params = inspect.signature(owner).parameters.values()
    return {
        p.name: _option(p.name, hints.get(p.name, Any), p.default)
        for p in params
        if p.kind is p.KEYWORD_ONLY
    }


def check_options(
    declared: Mapping[str, Option], given: Mapping[str, Any], owner: str
) -> dict[str, Any]:
    """``given`` checked against ``declared``: converted values of the given options (defaults
    are not filled in). Raises :class:`OptionsError` with every unknown key (listing the
    allowed ones with their defaults), missing required option and bad value."""
    problems: list[OptionError] = []
    allowed = ", ".join(option.describe_default() for option in declared.values()) or "none"
    checked: dict[str, Any] = {}
    for key, value in given.items():
        option = declared.get(key)
        if option is None:
            problems.append(OptionError(str(key), value, f"a known option; allowed: {allowed}"))
            continue
        try:
            checked[key] = option.check(value)
        except OptionError as error:
            problems.append(error)
    for option in declared.values():
        if option.required and option.name not in given:
            problems.append(
                OptionError(option.name, "<missing>", f"{option.expected()} (required)")
            )
    if problems:
        raise OptionsError(owner, problems)
    return checked


def check_value(value: Any, annotation: Any, key: str, expected: str | None = None) -> Any:
    """``value`` converted to the type ``annotation`` (constraints are not checked here), or
    :class:`OptionError` with ``expected`` (default: :func:`describe` of the type)."""
    if typing.get_origin(annotation) is Annotated and expected is None:
        return _option(key, annotation, REQUIRED).check(value, key)  # an item's own range
    expected = expected or describe(annotation)
    annotation = _strip(annotation)
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [arg for arg in args if arg is not type(None)]
        if len(inner) == 1:
            return check_value(value, inner[0], key, expected)
        for arg in inner:
            try:
                return check_value(value, arg, key, expected)
            except OptionError:
                continue
        raise OptionError(key, value, expected)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise OptionError(key, value, expected)
        return tuple(check_value(item, args[0], f"{key}[{i}]") for i, item in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise OptionError(key, value, expected)
        return {k: check_value(v, args[1], f"{key}.{k}") for k, v in value.items()}
    if origin is Literal:
        if isinstance(value, bool) != any(isinstance(a, bool) for a in args) or value not in args:
            raise OptionError(key, value, expected)
        return value
    converted = _scalar(value, annotation)
    if converted is _INVALID:
        raise OptionError(key, value, expected)
    return converted


def describe(annotation: Any) -> str:
    """Words for what a value of type ``annotation`` looks like in YAML."""
    annotation = _strip(annotation)
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        words = " or ".join(describe(arg) for arg in args if arg is not type(None))
        return words + " or null" if type(None) in args else words
    if origin is tuple:
        return f"a list of {_plural(describe(args[0]))}"
    if origin is dict:
        return f"a mapping of string to {_plural(describe(args[1]), plural=False)}"
    if origin is Literal:
        return "one of: " + ", ".join(sorted(str(a) for a in args))
    return _WORDS.get(annotation, getattr(annotation, "__name__", str(annotation)))


_WORDS = {
    int: "an integer",
    float: "a finite number",
    bool: "true or false",
    str: "a string",
    Path: "a file path",
    Any: "any value",
}


class _Invalid:
    def __repr__(self) -> str:
        return "<invalid>"


_INVALID: Any = _Invalid()


def _scalar(value: Any, annotation: Any) -> Any:
    if annotation is Any:
        return value
    if annotation is bool:
        return value if isinstance(value, bool) else _INVALID
    if annotation is int:
        return value if isinstance(value, int) and not isinstance(value, bool) else _INVALID
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return _INVALID
        number = float(value) if abs(value) < 1e308 else math.inf
        return number if math.isfinite(number) else _INVALID
    if annotation is str:
        return str(value) if isinstance(value, str) else _INVALID
    if annotation is Path:
        return str(value) if isinstance(value, str | Path) and str(value) else _INVALID
    raise TypeError(f"asvp.options: unsupported option type {annotation!r}")


def _option(name: str, annotation: Any, default: Any) -> Option:
    """An option from its annotation; the constraints of ``Annotated[X, ...] | None`` count
    as the option's own (null is always accepted where the type allows it)."""
    parts = [annotation]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        parts = list(typing.get_args(annotation))
    constraints = tuple(
        m
        for part in parts
        if typing.get_origin(part) is Annotated
        for m in part.__metadata__
        if isinstance(m, Range | Increasing | Length)
    )
    return Option(name, _strip(annotation), constraints, default)


def _strip(annotation: Any) -> Any:
    """``annotation`` without ``Annotated`` metadata, at every level."""
    if typing.get_origin(annotation) is Annotated:
        return _strip(annotation.__origin__)
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        stripped = tuple(_strip(a) for a in args)
        return typing.Union[stripped]  # noqa: UP007 (built from a tuple)
    return annotation


def _field_default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return REQUIRED


def _nullable(annotation: Any) -> bool:
    return type(None) in typing.get_args(annotation)


def _plural(words: str, plural: bool = True) -> str:
    bare = words.removeprefix("an ").removeprefix("a ")
    return bare + "s" if plural else bare


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)
