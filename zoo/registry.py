"""Model registry: ``@register_model`` and ``list_models`` (timm's pattern).

A model is chosen by a string, so "every transform x architecture" is two strings in a
config and there is no ``if model_type == ...`` chain anywhere. This module is a leaf: it
builds and loads nothing. The model families register themselves when ``zoo.models`` is
imported (``zoo.factory`` does that), and ``zoo.factory.create_model`` builds them.
"""

from __future__ import annotations

import fnmatch
from typing import Callable

from .frontends import UnknownNameError

_MODELS: dict[str, Callable] = {}
#: ``timm/<name>`` wraps any timm CNN as a one-channel spectrogram model without registering it.
TIMM_PREFIX = "timm/"
_TIMM_ENTRY = "timm"


def register_model(fn: Callable | None = None, *, name: str | None = None):
    """Register a model constructor ``fn(transform, num_classes, sample_rate, transform_params, **kw)``."""

    def wrap(f):
        key = name or f.__name__
        if key in _MODELS:
            raise ValueError(f"model {key!r} is registered twice")
        _MODELS[key] = f
        return f

    return wrap(fn) if fn is not None else wrap


def list_models(pattern: str = "*") -> list[str]:
    """Registered architecture names matching a glob pattern (``timm/<name>`` is open-ended and not listed)."""
    return sorted(n for n in _MODELS if n != _TIMM_ENTRY and fnmatch.fnmatch(n, pattern))


def describe_model(name: str) -> str:
    """The one-line docstring of the model's registered constructor."""
    return " ".join((_MODELS[name].__doc__ or "").split())


def model_entrypoint(architecture: str) -> tuple[Callable, dict]:
    """The constructor of ``architecture`` and the extra arguments the name implies (the timm model name)."""
    if architecture.startswith(TIMM_PREFIX) and _TIMM_ENTRY in _MODELS:
        return _MODELS[_TIMM_ENTRY], {"timm_name": architecture[len(TIMM_PREFIX):]}
    if architecture in _MODELS and architecture != _TIMM_ENTRY:
        return _MODELS[architecture], {}
    valid = list_models() + [f"{TIMM_PREFIX}<timm model>"]
    raise UnknownNameError(f"unknown model {architecture!r}; valid models: {', '.join(valid)}")
