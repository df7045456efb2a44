"""Model registry: ``@register_model`` + ``create_model`` + ``list_models`` (timm's pattern).

A model is chosen by a string, so "every transform x architecture" is two strings in a
config and there is no ``if model_type == ...`` chain anywhere. ``timm/<name>`` wraps any
timm CNN as a one-channel spectrogram model without registering it.
"""

from __future__ import annotations

import fnmatch
from typing import Callable

from .frontends import UnknownNameError, list_frontends

_MODELS: dict[str, Callable] = {}
TIMM_PREFIX = "timm/"


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
    """Registered model names matching a glob pattern (``timm/<name>`` is open-ended and not listed)."""
    _import_families()
    return sorted(n for n in _MODELS if n != "timm" and fnmatch.fnmatch(n, pattern))


def describe_model(name: str) -> str:
    """The one-line docstring of the model's registered constructor."""
    _import_families()
    return " ".join((_MODELS[name].__doc__ or "").split())


def create_model(
    name: str,
    transform: str = "mel",
    num_classes: int = 10,
    sample_rate: int = 22050,
    transform_params: dict | None = None,
    pretrained: str | None = None,
    **kwargs,
):
    """Build a model by name: waveform (B, samples) at ``sample_rate`` in, logits (B, num_classes) out."""
    _import_families()
    if transform not in list_frontends():
        raise UnknownNameError(f"unknown transform {transform!r}; valid transforms: {', '.join(list_frontends())}")
    if name.startswith(TIMM_PREFIX):
        ctor = _MODELS["timm"]
        kwargs = {"timm_name": name[len(TIMM_PREFIX):], **kwargs}
    elif name in _MODELS and name != "timm":
        ctor = _MODELS[name]
    else:
        valid = list_models() + [f"{TIMM_PREFIX}<timm model>"]
        raise UnknownNameError(f"unknown model {name!r}; valid models: {', '.join(valid)}")
    model = ctor(
        transform=transform,
        num_classes=num_classes,
        sample_rate=sample_rate,
        transform_params=dict(transform_params or {}),
        **kwargs,
    )
    model.model_config = {
        "name": name,
        "transform": transform,
        "num_classes": num_classes,
        "sample_rate": sample_rate,
        "transform_params": model.frontend.config(),
        "model_params": kwargs if not name.startswith(TIMM_PREFIX) else {k: v for k, v in kwargs.items() if k != "timm_name"},
    }
    if pretrained:
        from .hub import load_pretrained_weights

        load_pretrained_weights(model, name, pretrained)
    return model


def _import_families():
    """Importing the model files runs their ``@register_model`` decorators."""
    from .models import cnn, resnet_gru, resnet_vit, timm_cnn  # noqa: F401
