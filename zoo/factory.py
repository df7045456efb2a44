"""Build models: ``create_model`` (by name, optionally with pretrained weights) and ``from_pretrained``.

timm's split: ``zoo.registry`` only knows names, ``zoo.hub`` only reads and writes
folders, and this module puts the two together. Every model is built here, from
arguments or from a config dict (``build_model``), so a published folder, a Lightning
checkpoint and a training run rebuild an architecture the same way.
"""

from __future__ import annotations

from pathlib import Path

import torch

from . import models  # noqa: F401  (importing the families registers them)
from .frontends import UnknownNameError, list_frontends
from .hub import HubError, read_config, read_weights, resolve_folder
from .pretrained import PRETRAINED, list_pretrained, mismatches
from .registry import describe_model, list_models, model_entrypoint


def create_model(
    architecture: str,
    transform: str = "mel",
    num_classes: int = 10,
    sample_rate: int = 22050,
    transform_params: dict | None = None,
    pretrained: str | None = None,
    **model_params,
):
    """Build a model by name: waveform (B, samples) at ``sample_rate`` in, logits (B, num_classes) out.

    ``pretrained`` is a tag of ``PRETRAINED["<architecture>.<tag>"]`` or a published folder;
    the model's preprocessing must match what the weights were trained with.
    """
    if transform not in list_frontends():
        raise UnknownNameError(f"unknown transform {transform!r}; valid transforms: {', '.join(list_frontends())}")
    ctor, implied = model_entrypoint(architecture)
    model = ctor(transform=transform, num_classes=num_classes, sample_rate=sample_rate,
                 transform_params=dict(transform_params or {}), **implied, **model_params)
    model.model_config = {
        "architecture": architecture,
        "model_params": dict(model_params),
        "num_classes": num_classes,
        "transform": transform,
        "transform_params": model.frontend.config(),
        "sample_rate": sample_rate,
    }
    if pretrained:
        load_pretrained_weights(model, pretrained)
    return model


def build_model(config: dict):
    """An untrained model with the architecture a config (config.json, or checkpoint hyperparameters) describes."""
    return create_model(config["architecture"], transform=config["transform"], num_classes=config["num_classes"],
                        sample_rate=config["sample_rate"], transform_params=config.get("transform_params"),
                        **(config.get("model_params") or {}))


def load_state(model: torch.nn.Module, state: dict, source) -> None:
    """Strict loading (every weight present, nothing left over), with an error that names ``source``."""
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise HubError(f"{source}: the weights do not fit the architecture built from the config: {e}") from None


def attach_metadata(model: torch.nn.Module, config: dict):
    """What a loaded model carries: label names, task and its whole config (``predict`` and
    ``save_pretrained`` read them); returned in eval mode."""
    model.label_names = list(config["label_names"])
    model.task = config["task"]
    model.config = config
    return model.eval()


def load_pretrained_weights(model: torch.nn.Module, tag: str) -> None:
    """Fill ``model`` (built by ``create_model``) with the weights ``tag`` names.

    ``tag`` is either a tag of ``PRETRAINED["arch.tag"]`` or a path to a published folder.
    The model's preprocessing (sample rate, transform and its parameters, number of
    classes) must match what the weights were trained with; otherwise the error lists
    every difference. Label names, task and config are attached to the model.
    """
    name = model.model_config["architecture"]
    if Path(tag).is_dir():
        folder, source = Path(tag), str(tag)
    elif f"{name}.{tag}" in PRETRAINED:
        source = f"{name}.{tag}"
        folder = _pretrained_folder(source)
    else:
        known = list_pretrained(f"{name}.*")
        raise UnknownNameError(
            f"no pretrained weights {name}.{tag!r} and no folder {tag!r}; "
            f"known for {name}: {', '.join(known) if known else 'none'} (all: musiczoo models --pretrained)"
        )
    config = read_config(folder)
    bad = mismatches({k: config[k] for k in ("architecture", "sample_rate", "transform", "num_classes", "transform_params")},
                     model.model_config)
    if bad:
        raise HubError(
            f"pretrained {source!r} does not fit the model that was built: the weights expect "
            f"{'; '.join(bad)}. Build the model with those settings, or load it with from_pretrained({source!r})."
        )
    load_state(model, read_weights(folder), folder)
    attach_metadata(model, config)


def _pretrained_folder(name: str) -> Path:
    """Download (or find in the cache) the folder of a registered entry and check it against the entry."""
    entry = PRETRAINED[name]
    try:
        folder = resolve_folder(entry.source)
    except HubError as e:
        if not entry.uploaded:
            raise HubError(f"pretrained {name!r}: its weights are not yet uploaded to {entry.source!r}") from e
        raise
    bad = mismatches(entry.expectations(name.split(".", 1)[0]), read_config(folder))
    if bad:
        raise HubError(f"pretrained {name!r}: the folder at {entry.source!r} disagrees with the registered entry: {'; '.join(bad)}")
    return folder


def from_pretrained(path_or_hub_id: str | Path):
    """Load a published model (folder, Hub id ``owner/name`` or ``arch.tag`` name) in eval mode.

    Reads only ``config.json`` and ``model.safetensors``; the returned model has
    ``label_names``, ``task`` and ``config`` attached.
    """
    source = str(path_or_hub_id)
    folder = _pretrained_folder(source) if not Path(source).is_dir() and source in PRETRAINED else resolve_folder(source)
    config = read_config(folder)
    model = build_model(config)
    load_state(model, read_weights(folder), folder)
    return attach_metadata(model, config)


__all__ = ["create_model", "build_model", "from_pretrained", "load_pretrained_weights", "attach_metadata",
           "list_models", "describe_model"]
