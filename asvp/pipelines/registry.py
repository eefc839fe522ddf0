"""The pipeline registry: each pipeline module registers its one :class:`Pipeline` by name."""

from __future__ import annotations

from asvp.pipelines.base import Pipeline

_PIPELINES: dict[str, Pipeline] = {}


def register_pipeline(pipeline: Pipeline) -> Pipeline:
    """Add ``pipeline`` under its name (once) and return it."""
    if pipeline.name in _PIPELINES:
        raise ValueError(f"pipeline {pipeline.name!r} is registered twice")
    _PIPELINES[pipeline.name] = pipeline
    return pipeline


def get_pipeline(name: str) -> Pipeline:
    """The pipeline registered as ``name``."""
    try:
        return _PIPELINES[name]
    except KeyError:
        raise ValueError(
            f"unknown pipeline {name!r}; expected one of {available_pipelines()}"
        ) from None


def available_pipelines() -> tuple[str, ...]:
    """The registered pipelines' names, sorted."""
    return tuple(sorted(_PIPELINES))
