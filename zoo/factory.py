"""Build models: ``create_model`` (by name, optionally with pretrained weights) and ``from_pretrained``.

timm's split: ``zoo.registry`` only knows names, ``zoo.hub`` only reads and writes
folders, and this module puts the two together. Every model is built here, from
arguments or from a config dict (``build_model``), so a published folder, a Lightning
checkpoint and a training run rebuild an architecture the same way.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch.overrides import TorchFunctionMode

from . import models  # noqa: F401  (importing the families registers them)
from .frontends import UnknownNameError, list_frontends
from .hub import (
    CONFIG_NAME,
    MAX_HEAD_PARAMETERS,
    MAX_PARAMETERS,
    HubError,
    is_hub_id,
    read_config,
    read_weights,
    resolve_folder,
)
from .pretrained import PRETRAINED, list_pretrained, mismatches
from .registry import TIMM_PREFIX, describe_model, list_models, model_entrypoint

#: A plain timm architecture name; ``hf-hub:``/``hf_hub:``/``local-dir:`` sources or paths make timm fetch or read files.
_PLAIN_TIMM_NAME = re.compile(r"[A-Za-z0-9_][\w.-]*")


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
    if isinstance(architecture, str) and architecture.startswith(TIMM_PREFIX) \
            and not _PLAIN_TIMM_NAME.fullmatch(architecture[len(TIMM_PREFIX):]):
        raise UnknownNameError(
            f"{architecture!r}: only plain timm architecture names are accepted (e.g. timm/resnet18); a source such "
            f"as hf-hub: or local-dir: is refused because timm would download or read files to build it")
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


class _WeightsOnMeta(TorchFunctionMode):
    """``torch.empty`` (how layers allocate their weights) on the meta device: a model's parameters
    are counted without allocating them, while the front-end's small buffers are computed as usual."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func is torch.empty:
            kwargs["device"] = "meta"
        return func(*args, **kwargs)


def _build(config: dict):
    return create_model(config["architecture"], transform=config["transform"], num_classes=config["num_classes"],
                        sample_rate=config["sample_rate"], transform_params=config.get("transform_params"),
                        **(config.get("model_params") or {}))


def build_model(config: dict, source: str | Path | None = None):
    """An untrained model with the architecture a config (config.json, or checkpoint hyperparameters) describes.

    The model is first sized without allocating its weights: a config whose head (embedding x
    classes) or whole model is beyond ``MAX_HEAD_PARAMETERS`` / ``MAX_PARAMETERS`` is refused.
    With ``source`` (the file the config came from), a config that does not build is a
    :class:`HubError` naming it.
    """
    where = source if source is not None else "config"
    try:
        with torch.random.fork_rng(devices=[]), _WeightsOnMeta():  # the probe leaves the random state alone
            probe = _build(config)
        head = sum(p.numel() for p in probe.head.parameters()) if isinstance(getattr(probe, "head", None), torch.nn.Module) else 0
        total = sum(p.numel() for p in probe.parameters())
        del probe
        if head > MAX_HEAD_PARAMETERS:
            raise HubError(f"{where}: num_classes {config['num_classes']} makes a head of {head:,} parameters "
                           f"(at most {MAX_HEAD_PARAMETERS:,})")
        if total > MAX_PARAMETERS:
            raise HubError(f"{where}: architecture {config['architecture']!r} with model_params "
                           f"{config.get('model_params') or {}} has {total:,} parameters (at most {MAX_PARAMETERS:,})")
        return _build(config)
    except HubError:
        raise
    except (TypeError, ValueError, RuntimeError, NotImplementedError) as e:
        if source is None:
            raise
        raise HubError(f"{source}: architecture {config['architecture']!r} cannot be built from its settings "
                       f"(model_params {config.get('model_params') or {}}): {type(e).__name__}: "
                       f"{(str(e).splitlines() or [''])[0]}") from None


def load_state(model: torch.nn.Module, state: dict, source) -> None:
    """Strict loading (every weight present, nothing left over), with an error that names ``source``."""
    try:
        model.load_state_dict(state)
    except RuntimeError as e:  # one line: torch lists every key on its own line
        details = "; ".join(line.strip() for line in str(e).splitlines()[1:] if line.strip()) or str(e)
        details = details if len(details) <= 400 else details[:397] + "..."
        raise HubError(f"{source}: the weights do not fit the architecture built from the config: {details}") from None


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
    # A registered Hub id is unambiguous, even where a local folder shares its owner's name.
    explicit = f"hf://{entry.source}" if not Path(entry.source).is_dir() and is_hub_id(entry.source) else entry.source
    try:
        folder = resolve_folder(explicit)
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
    model = build_model(config, Path(folder) / CONFIG_NAME)
    load_state(model, read_weights(folder), folder)
    return attach_metadata(model, config)


__all__ = ["create_model", "build_model", "from_pretrained", "load_pretrained_weights", "attach_metadata",
           "list_models", "describe_model"]
