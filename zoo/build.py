"""Build a model from its spec: ``build_model``, the one place any model is constructed.

A training run (``MusicTask``), ``create_model``, a published folder and a Lightning
checkpoint all end here, so they rebuild an architecture the same way and every model
leaves with its :class:`~zoo.spec.ModelSpec` attached at ``model.spec``.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch.overrides import TorchFunctionMode

from . import models  # noqa: F401  (importing the families registers them)
from .frontends import UnknownNameError, list_transforms
from .registry import TIMM_PREFIX, model_entrypoint
from .spec import MAX_HEAD_PARAMETERS, MAX_PARAMETERS, ModelError, ModelSpec

#: A plain timm architecture name; ``hf-hub:``/``hf_hub:``/``local-dir:`` sources or paths make timm fetch or read files.
_PLAIN_TIMM_NAME = re.compile(r"[A-Za-z0-9_][\w.-]*")


class _WeightsOnMeta(TorchFunctionMode):
    """``torch.empty`` (how layers allocate their weights) on the meta device: a model's parameters
    are counted without allocating them, while the front-end's small buffers are computed as usual."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func is torch.empty:
            kwargs["device"] = "meta"
        return func(*args, **kwargs)


def _construct(spec: ModelSpec) -> torch.nn.Module:
    if spec.transform not in list_transforms():
        raise UnknownNameError(f"unknown transform {spec.transform!r}; valid transforms: {', '.join(list_transforms())}")
    if spec.architecture.startswith(TIMM_PREFIX) and not _PLAIN_TIMM_NAME.fullmatch(spec.architecture[len(TIMM_PREFIX):]):
        raise UnknownNameError(
            f"{spec.architecture!r}: only plain timm architecture names are accepted (e.g. timm/resnet18); a source "
            f"such as hf-hub: or local-dir: is refused because timm would download or read files to build it")
    ctor, implied = model_entrypoint(spec.architecture)
    model = ctor(transform=spec.transform, num_classes=spec.num_classes, sample_rate=spec.sample_rate,
                 transform_params=dict(spec.transform_params), **implied, **spec.model_params)
    model.spec = spec.replace(transform_params=model.frontend.config())  # every front-end setting, defaults included
    return model


def build_model(spec: ModelSpec, source: str | Path | None = None) -> torch.nn.Module:
    """An untrained model of ``spec``, with ``model.spec`` attached (its front-end settings completed).

    With ``source`` (the file an untrusted spec came from) the model is first sized without
    allocating its weights: a head (embedding x classes) or whole model beyond
    ``MAX_HEAD_PARAMETERS`` / ``MAX_PARAMETERS`` is refused, and a spec that does not build is
    a :class:`ModelError` naming the file.
    """
    if source is None:
        return _construct(spec)
    try:
        with torch.random.fork_rng(devices=[]), _WeightsOnMeta():  # the probe leaves the random state alone
            probe = _construct(spec)
        head = sum(p.numel() for p in probe.head.parameters()) if isinstance(getattr(probe, "head", None), torch.nn.Module) else 0
        total = sum(p.numel() for p in probe.parameters())
        del probe
        if head > MAX_HEAD_PARAMETERS:
            raise ModelError(f"{source}: num_classes {spec.num_classes} makes a head of {head:,} parameters "
                             f"(at most {MAX_HEAD_PARAMETERS:,})")
        if total > MAX_PARAMETERS:
            raise ModelError(f"{source}: architecture {spec.architecture!r} with model_params "
                             f"{spec.model_params} has {total:,} parameters (at most {MAX_PARAMETERS:,})")
        return _construct(spec)
    except ModelError:
        raise
    except (TypeError, ValueError, RuntimeError, NotImplementedError) as e:
        raise ModelError(f"{source}: architecture {spec.architecture!r} cannot be built from its settings "
                         f"(model_params {spec.model_params}): {type(e).__name__}: "
                         f"{(str(e).splitlines() or [''])[0]}") from None


def load_state(model: torch.nn.Module, state: dict, source) -> None:
    """Strict loading (every weight present, nothing left over), with an error that names ``source``."""
    try:
        model.load_state_dict(state)
    except RuntimeError as e:  # one line: torch lists every key on its own line
        details = "; ".join(line.strip() for line in str(e).splitlines()[1:] if line.strip()) or str(e)
        details = details if len(details) <= 400 else details[:397] + "..."
        raise ModelError(f"{source}: the weights do not fit the architecture built from the config: {details}") from None
