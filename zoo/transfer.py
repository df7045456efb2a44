"""Transfer learning: a training run that starts from another model's weights.

``MusicTask(init_from=SOURCE)`` (``musiczoo fit --model.init_from SOURCE``) takes SOURCE as
``predict`` does: a published folder, a Lightning ``.ckpt``, an ``arch.tag`` name or a Hub id
(``zoo.factory.ModelSource``). The rules, decided once here:

* **The source decides what is built.** ``architecture``, ``transform``, ``transform_params``,
  ``model_params`` and ``sample_rate`` are the source's (:data:`SOURCE_FIELDS`). A field left
  unset takes the source's value; a field that is set must equal it (for ``transform_params``
  and ``model_params``, every key that is set must equal the source's value for that key). A
  contradiction is one :class:`~zoo.spec.ModelError` line naming both values, raised while the
  task is built, before anything trains. The sample rate is the data's (the CLI links it in),
  so the data must be at the source's rate. The chunk length, the labels and the task are the
  data's.
* **The encoder is the source's.** Every weight but the head's (``WaveformModel.HEAD_MODULES``
  is the one split between encoder and head) is loaded. The head is loaded too when the label
  set is the same (same task, same label names in the same order), and re-initialised
  otherwise; one printed line says which.
* ``freeze="encoder"`` trains a linear probe: the encoder's parameters get no gradient and its
  modules stay in eval mode, so normalisation statistics do not move either.
  ``encoder_lr_scale`` multiplies the learning rate of the encoder's parameters
  (discriminative fine-tuning); the head keeps ``lr``.
* The spec's provenance records the source (``init_from``) and ``freeze``, so checkpoints,
  published ``config.json`` files and model cards say what a model was trained from.
"""

from __future__ import annotations

from lightning.pytorch.utilities import rank_zero_only
from torch import nn

from .spec import FREEZE_CHOICES, ModelError, ModelSpec

#: The spec fields a transferred model takes from its source (see the module's docstring).
SOURCE_FIELDS = ("architecture", "transform", "transform_params", "model_params", "sample_rate")
#: Where a config sets each of them, for the contradiction's message.
_WHERE = {"architecture": "model.architecture", "transform": "model.transform",
          "transform_params": "model.transform_params", "model_params": "model.model_params",
          "sample_rate": "the data's sample_rate (data.init_args.sample_rate)"}


def read_source(init_from: str) -> tuple[ModelSpec, dict]:
    """The source's spec and weights, read once the way ``predict`` reads a model argument."""
    from .factory import ModelSource

    model = ModelSource.parse(init_from).load()
    return model.spec, model.state_dict()


def resolve_fields(arguments: dict, source: ModelSpec, init_from: str) -> dict:
    """The :data:`SOURCE_FIELDS` of a run from ``source``: each unset one (None, or an empty
    mapping) taken from the source, each set one checked against it."""
    theirs = source.to_config()
    resolved = {}
    for name in SOURCE_FIELDS:
        given, wanted = arguments.get(name), theirs[name]
        if isinstance(wanted, dict):
            for key, value in (given or {}).items():
                if key not in wanted or wanted[key] != value:
                    shown = repr(wanted[key]) if key in wanted else "unset (the architecture's default)"
                    raise ModelError(f"--model.init_from {init_from}: {_WHERE[name]}.{key} is {value!r}, the "
                                     f"source's is {shown} (leave it unset to take the source's)")
        elif given is not None and given != wanted:
            fix = f"set --data.init_args.sample_rate={wanted}" if name == "sample_rate" else \
                "leave it unset to take the source's"
            raise ModelError(f"--model.init_from {init_from}: {_WHERE[name]} is {given!r}, the source's is "
                             f"{wanted!r} ({fix})")
        resolved[name] = wanted
    return resolved


def same_labels(a: ModelSpec, b: ModelSpec) -> bool:
    """Whether a head trained for ``a`` means the same for ``b``: same task, same names, same order."""
    return a.task == b.task and tuple(a.label_names) == tuple(b.label_names)


def load_source_weights(net: nn.Module, source: ModelSpec, state: dict, init_from: str) -> str:
    """Load the source's encoder (and head, when the labels are the same) into ``net``; returns
    the line that says which."""
    own = net.state_dict()
    encoder = {k: v for k, v in state.items() if not net.is_head_key(k)}
    missing = sorted({k for k in own if not net.is_head_key(k)} ^ set(encoder))
    if missing:
        raise ModelError(f"--model.init_from {init_from}: the source's encoder does not fit the model built from "
                         f"its spec ({', '.join(missing[:5])})")
    keep_head = same_labels(source, net.spec)
    own.update(encoder)
    if keep_head:
        own.update({k: v for k, v in state.items() if net.is_head_key(k)})
    net.load_state_dict(own)
    if keep_head:
        return f"init_from {init_from}: encoder and head loaded (the same {source.num_classes} labels)"
    return (f"init_from {init_from}: encoder loaded, head re-initialised (the source's {_labels(source)} "
            f"are not the data's {_labels(net.spec)})")


def _labels(spec: ModelSpec) -> str:
    names = ", ".join(spec.label_names[:4]) + (", ..." if spec.num_classes > 4 else "")
    return f"{spec.num_classes} {spec.task} labels ({names})"


def encoder_parameters(net: nn.Module) -> list[nn.Parameter]:
    return [p for name, p in net.named_parameters() if not net.is_head_key(name)]


def head_parameters(net: nn.Module) -> list[nn.Parameter]:
    return [p for name, p in net.named_parameters() if net.is_head_key(name)]


def check_freeze(freeze: str | None, init_from: str | None, encoder_lr_scale: float) -> None:
    if freeze is not None and freeze not in FREEZE_CHOICES:
        raise ValueError(f"--model.freeze must be one of {', '.join(FREEZE_CHOICES)}, got {freeze!r}")
    if freeze and not init_from:
        raise ValueError("--model.freeze encoder needs --model.init_from SOURCE: a linear probe trains a head on "
                         "a trained encoder")
    if not (isinstance(encoder_lr_scale, (int, float)) and encoder_lr_scale >= 0):
        raise ValueError(f"--model.encoder_lr_scale must be a number >= 0, got {encoder_lr_scale!r}")


def freeze_encoder(net: nn.Module) -> None:
    """No gradient for the encoder's parameters (its modules' modes are :func:`keep_encoder_in_eval`'s)."""
    for p in encoder_parameters(net):
        p.requires_grad_(False)


def keep_encoder_in_eval(net: nn.Module) -> None:
    """Put the encoder's modules in eval mode: frozen BatchNorm statistics, no dropout inside the encoder."""
    for module in net.encoder_modules():
        module.eval()


@rank_zero_only
def announce(line: str) -> None:
    print(line, flush=True)


def optimizer_groups(net: nn.Module, lr: float, weight_decay: float, encoder_lr_scale: float) -> list[dict]:
    """AdamW's parameter groups: encoder and head, each split into weight-decayed weights and the
    biases and normalisation weights that get none; the encoder's at ``lr * encoder_lr_scale``.
    Parameters without a gradient (a frozen encoder) are left out; so are empty groups."""
    groups = []
    for params, group_lr in ((encoder_parameters(net), lr * encoder_lr_scale), (head_parameters(net), lr)):
        trained = [p for p in params if p.requires_grad]
        for decayed, decay in ((True, weight_decay), (False, 0.0)):
            chosen = [p for p in trained if (p.dim() > 1) == decayed]
            if chosen:
                groups.append({"params": chosen, "weight_decay": decay, "lr": group_lr})
    return groups

