"""Lightning checkpoints: read them safely, rebuild their model, publish them.

A ``MusicTask`` checkpoint records its model's spec in the task's hyperparameters (the
task's arguments are the spec's fields: the architecture and its settings, the chunk length
and sample rate, the label names and task, and the data module's ``provenance``, all linked
from the data module by the CLI); :func:`checkpoint_spec` reads it back. It is read with ``torch.load(weights_only=True)``
(tensors and plain data only), so a tampered file cannot run code.
"""

from __future__ import annotations

import logging
import pathlib
import pickle
from pathlib import Path

import torch

from datamodules.primitives.chunks import DEFAULT_CHUNK_SECONDS, default_label_names
from datamodules.primitives.files import read_json

from .build import build_model, load_state
from .hub import push_to_hub, save_pretrained
from .spec import MAX_NUM_CLASSES, PROVENANCE_FIELDS, ModelError, ModelSpec

log = logging.getLogger(__name__)

# Checkpoints written through LightningCLI hold ``pathlib`` paths among the data module's
# hyperparameters; these classes only hold strings, so allowing them keeps loading safe.
_SAFE_CHECKPOINT_GLOBALS = [pathlib.PosixPath, pathlib.PurePosixPath, pathlib.WindowsPath, pathlib.PureWindowsPath]


def load_checkpoint_dict(path: str | Path) -> dict:
    """A Lightning checkpoint as plain data, loaded with ``weights_only=True`` (no code runs).

    Memory-mapped: reading the hyperparameters (a resume check, a publish) does not read the
    optimizer state and weights of a large checkpoint into memory first."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: no such checkpoint")
    try:
        with torch.serialization.safe_globals(_SAFE_CHECKPOINT_GLOBALS):
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as e:  # an object the weights-only unpickler does not allow: never built
        reason = next((line.strip() for line in str(e).splitlines() if "Unsupported global" in line),
                      str(e).splitlines()[0] if str(e) else "")
        reason = reason.split(" Please use ")[0].rstrip(".")  # not torch's advice to allow-list the global
        raise ModelError(
            f"{path}: refused to load: it is not a checkpoint of tensors and plain data ({type(e).__name__}: {reason}). "
            f"Only weights-only loading is used, because unpickling arbitrary objects can run code."
        ) from None
    except Exception as e:  # torch reports a cut or foreign file in many ways (RuntimeError, EOFError, ...)
        reason = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise ModelError(f"{path}: cannot read it as a checkpoint: truncated or not a PyTorch file "
                         f"({type(e).__name__}: {reason})") from None


def checkpoint_spec(ckpt: dict, path: str | Path) -> ModelSpec:
    """The spec (architecture, chunk length, labels, task, provenance) a checkpoint records.

    Checkpoints written before the task recorded ``architecture``, ``chunk_seconds`` and
    ``provenance`` (they had ``model``, and the data module's ``clip_seconds``, ``split``
    and ``synthetic``) are read too.
    """
    hp = dict(ckpt.get("hyper_parameters") or {})
    dm = ckpt.get("datamodule_hyper_parameters") or {}
    if "architecture" not in hp and "model" in hp:  # before the architecture had one name
        hp["architecture"] = hp["model"]
    missing = [k for k in ("architecture", "transform", "num_classes", "sample_rate") if k not in hp]
    if missing or "state_dict" not in ckpt:
        raise ModelError(f"{path}: not a musiczoo MusicTask checkpoint (missing {', '.join(missing) or 'state_dict'})")
    if not isinstance(dm, dict):
        dm = {}
    provenance = hp.get("provenance") or _legacy_provenance(dm)
    if provenance is not None and not isinstance(provenance, dict):
        raise ModelError(f"{path} (hyper_parameters): provenance must be a mapping of {', '.join(PROVENANCE_FIELDS)}, "
                       f"got {type(provenance).__name__}")
    chunk_seconds = hp["chunk_seconds"] if hp.get("chunk_seconds") is not None else dm.get("clip_seconds")
    if provenance is None or chunk_seconds is None:
        log.warning("%s records no data provenance: assuming %g-second chunks; dataset, split and synthetic data "
                    "unknown (musiczoo publish takes --chunk-seconds, --dataset, --split, --synthetic)",
                    path, DEFAULT_CHUNK_SECONDS)
    if chunk_seconds is None:
        chunk_seconds = DEFAULT_CHUNK_SECONDS
    elif isinstance(chunk_seconds, int) and not isinstance(chunk_seconds, bool):
        chunk_seconds = float(chunk_seconds)
    num_classes = hp["num_classes"]
    label_names = hp.get("label_names")
    if label_names is None and isinstance(num_classes, int) and 1 <= num_classes <= MAX_NUM_CLASSES:
        label_names = default_label_names(num_classes)
    config = {
        "architecture": hp["architecture"], "model_params": hp.get("model_params") or {},
        "num_classes": num_classes, "transform": hp["transform"],
        "transform_params": hp.get("transform_params") or {}, "sample_rate": hp["sample_rate"],
        "chunk_seconds": chunk_seconds,
        "task": hp.get("task", "multiclass"),
        "label_names": list(label_names) if isinstance(label_names, (list, tuple)) else label_names,
        "target_scale": list(scale) if isinstance(scale := hp.get("target_scale"), (list, tuple)) else scale,
        **{k: v for k, v in (provenance or {}).items() if k in PROVENANCE_FIELDS},
    }
    # The same schema as a published config.json, checked before any model is built.
    return ModelSpec.from_config(config, f"{path} (hyper_parameters)")


def _legacy_provenance(dm: dict) -> dict | None:
    """Provenance of a checkpoint written before the task recorded it: the data module's class and hyperparameters."""
    if not dm:
        return None
    class_path = str(dm.get("_class_path") or "")
    return {"dataset": class_path.split(".")[-2] if "." in class_path else None,
            "split": None if dm.get("split") is None else str(dm["split"]),
            "synthetic": bool(dm.get("synthetic"))}


def load_checkpoint(path: str | Path):
    """Rebuild the model of a ``MusicTask`` Lightning checkpoint (weights-only loading) in eval mode,
    with its spec at ``model.spec``."""
    ckpt = load_checkpoint_dict(path)
    model = build_model(checkpoint_spec(ckpt, path), f"{path} (hyper_parameters)")
    load_state(model, {k[len("net."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("net.")}, path)
    return model.eval()


def publish(ckpt_path: str | Path, out_dir: str | Path, push_to_hub_id: str | None = None, *,
            metrics: dict | None = None, force: bool = False, **changes) -> Path:
    """Turn a Lightning checkpoint into a published folder (and optionally upload it).

    Test metrics come from ``metrics`` or, when not given, from a ``metrics.json`` (a flat
    ``{name: value}`` object) next to the checkpoint; without either the card says no
    results were recorded. ``changes`` override spec fields read from the checkpoint
    (``dataset``, ``split``, ``synthetic``, ``chunk_seconds``). A non-empty ``out_dir`` is
    refused unless ``force`` (see ``zoo.hub.save_pretrained``).
    """
    ckpt_path = Path(ckpt_path)
    model = load_checkpoint(ckpt_path)
    if metrics is None and (ckpt_path.parent / "metrics.json").is_file():
        metrics = read_json(ckpt_path.parent / "metrics.json", ModelError)
    if metrics is not None:
        changes["metrics"] = metrics
    out = save_pretrained(model, out_dir, model_id=push_to_hub_id, force=force, **changes)
    if push_to_hub_id:
        push_to_hub(out, push_to_hub_id)
    return out
