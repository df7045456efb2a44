"""Models by name or by source: ``create_model``, ``ModelSource`` and ``from_pretrained``.

timm's split: ``zoo.registry`` only knows names, ``zoo.build`` builds a spec, ``zoo.hub``
reads and writes folders, ``zoo.checkpoint`` reads Lightning checkpoints, and this module
puts them together. A model argument (a published folder, a Hub id, an ``arch.tag`` name or
a ``.ckpt``) is resolved once into a :class:`ModelSource`; loading it reads the spec once
and builds the model once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from datamodules.primitives.chunks import DEFAULT_CHUNK_SECONDS

from .build import build_model, load_state
from .checkpoint import load_checkpoint
from .frontends import UnknownNameError
from .hub import is_hub_id, hub_id_of, read_spec, read_weights, resolve_folder
from .pretrained import PRETRAINED, list_pretrained, mismatches
from .registry import describe_model, list_models
from .spec import CONFIG_NAME, ModelError, ModelSpec


#: What a model built by ``create_model`` must share with the pretrained weights loaded into it.
WEIGHTS_MUST_MATCH = ("architecture", "sample_rate", "transform", "num_classes", "transform_params")


def create_model(
    architecture: str,
    transform: str = "mel",
    num_classes: int = 10,
    sample_rate: int = 22050,
    transform_params: dict | None = None,
    pretrained: str | None = None,
    *,
    chunk_seconds: float = DEFAULT_CHUNK_SECONDS,
    task: str = "multiclass",
    label_names: list[str] | None = None,
    target_scale: tuple[float, float] | None = None,
    **model_params,
):
    """Build a model by name: waveform (B, samples) at ``sample_rate`` in, logits (B, num_classes) out.

    The arguments are the fields of its :class:`~zoo.spec.ModelSpec` (``model.spec``);
    ``model_params`` are the architecture's own settings. ``pretrained`` is a tag of
    ``PRETRAINED["<architecture>.<tag>"]`` or a published folder; the model's preprocessing
    must match what the weights were trained with.
    """
    spec = ModelSpec(architecture, transform, transform_params or {}, sample_rate, chunk_seconds, num_classes, task,
                     tuple(label_names or ()), model_params, target_scale=target_scale)
    model = build_model(spec)
    if pretrained:
        load_pretrained_weights(model, pretrained)
    return model


@dataclass(frozen=True)
class ModelSource:
    """What a model argument names, decided once: ``kind`` is ``folder``, ``hub``, ``pretrained``
    (a registered ``arch.tag``) or ``checkpoint``; ``location`` is the folder, the Hub id or the
    checkpoint file; ``name`` is the argument as given."""

    kind: str
    location: str
    name: str

    @classmethod
    def parse(cls, argument: str | Path) -> ModelSource:
        """Resolve a model argument without reading or fetching anything.

        A string that names no local folder is a Hub id only when unambiguous (``hf://owner/name``,
        or ``owner/name`` where ``owner`` is not a local folder; see ``zoo.hub.hub_id_of``): a
        mistyped local path is an error with the close local names, never a download.
        """
        name = str(argument)
        if name.endswith(".ckpt"):
            return cls("checkpoint", name, name)
        if Path(name).expanduser().is_dir():
            return cls("folder", str(Path(name).expanduser()), name)
        if name in PRETRAINED:
            return cls("pretrained", PRETRAINED[name].source, name)
        return cls("hub", hub_id_of(name), name)

    @property
    def hub_id(self) -> str | None:
        """The Hugging Face Hub repository loading this source fetches from, if any."""
        if self.kind == "hub":
            return self.location
        if self.kind == "pretrained" and is_hub_id(self.location) and not Path(self.location).is_dir():
            return self.location
        return None

    def folder(self) -> Path:
        """The published folder (fetched from the Hub into its cache when it lives there)."""
        if self.kind == "checkpoint":
            raise ModelError(f"{self.name} is a Lightning checkpoint, not a published folder")
        if self.kind == "pretrained":
            entry = PRETRAINED[self.name]
            try:
                return resolve_folder(f"hf://{self.hub_id}" if self.hub_id else self.location)
            except ModelError as e:
                if not entry.uploaded:
                    raise ModelError(f"pretrained {self.name!r}: its weights are not yet uploaded to {entry.source!r}") from e
                raise
        return resolve_folder(f"hf://{self.location}" if self.kind == "hub" else self.location)

    def read(self) -> tuple[Path, ModelSpec]:
        """The published folder and its spec, read once (a registered entry is checked against it)."""
        folder = self.folder()
        spec = read_spec(folder)
        if self.kind == "pretrained":
            bad = mismatches(PRETRAINED[self.name].expectations(self.name.split(".", 1)[0]), spec.to_config())
            if bad:
                raise ModelError(f"pretrained {self.name!r}: the folder at {self.location!r} disagrees with the "
                                 f"registered entry: {'; '.join(bad)}")
        return folder, spec

    def load(self) -> torch.nn.Module:
        """The model in eval mode, with its spec at ``model.spec``."""
        if self.kind == "checkpoint":
            return load_checkpoint(self.location)
        folder, spec = self.read()
        model = build_model(spec, folder / CONFIG_NAME)
        load_state(model, read_weights(folder), folder)
        return model.eval()


def from_pretrained(argument: str | Path) -> torch.nn.Module:
    """Load a model (published folder, Hub id ``owner/name``, ``arch.tag`` name or Lightning ``.ckpt``)
    in eval mode, with its spec at ``model.spec``. A folder is read without unpickling anything;
    a checkpoint is read weights-only."""
    return ModelSource.parse(argument).load()


def load_pretrained_weights(model: torch.nn.Module, tag: str) -> None:
    """Fill ``model`` (built by ``create_model``) with the weights ``tag`` names.

    ``tag`` is either a tag of ``PRETRAINED["arch.tag"]`` or a path to a published folder.
    The model's preprocessing (sample rate, transform and its parameters, number of
    classes) must match what the weights were trained with; otherwise the error lists
    every difference. The model then carries the published spec (label names, task, chunk
    length, provenance) and is in eval mode.
    """
    name = model.spec.architecture
    if Path(tag).is_dir():
        source = ModelSource("folder", str(tag), str(tag))
    elif f"{name}.{tag}" in PRETRAINED:
        source = ModelSource.parse(f"{name}.{tag}")
    else:
        known = list_pretrained(f"{name}.*")
        raise UnknownNameError(
            f"no pretrained weights {name}.{tag!r} and no folder {tag!r}; "
            f"known for {name}: {', '.join(known) if known else 'none'} (all: musiczoo models --pretrained)"
        )
    folder, spec = source.read()
    published = spec.to_config()
    bad = mismatches({k: published[k] for k in WEIGHTS_MUST_MATCH}, model.spec.to_config())
    if bad:
        raise ModelError(
            f"pretrained {source.name!r} does not fit the model that was built: the weights expect "
            f"{'; '.join(bad)}. Build the model with those settings, or load it with from_pretrained({source.name!r})."
        )
    load_state(model, read_weights(folder), folder)
    model.spec = spec
    model.eval()


__all__ = ["create_model", "from_pretrained", "ModelSource", "load_pretrained_weights", "list_models", "describe_model"]
