"""The published folder: ``model.safetensors`` + ``config.json`` + ``README.md``; read, write, push.

A published folder (or a Hugging Face Hub repository holding one) is the only thing
``zoo.from_pretrained`` reads, and it is read without unpickling anything:

* ``model.safetensors``: the model's state_dict. The front-end's filterbanks are
  non-persistent buffers rebuilt from the config, so they are not in it.
* ``config.json``: everything needed to rebuild the model (architecture and its
  parameters, transform and all its parameters, sample rate) and to use it (chunk length,
  task, label names), plus where it came from (dataset, split, whether the training data
  was synthetic, test metrics, package versions, git commit).
* ``README.md``: the model card (``zoo.card``), generated from the config.

Pickles (``pytorch_model.bin``, ``.ckpt``) can run arbitrary code when loaded, so a folder
holding only a pickle is refused. This module does file and network I/O only; building a
model from a config is ``zoo.factory``'s job, Lightning checkpoints are ``zoo.checkpoint``'s.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import subprocess
from pathlib import Path

import torch
from huggingface_hub import HfApi, snapshot_download
from safetensors.torch import load_file, save_file

from .audio import DEFAULT_CHUNK_SECONDS, TASKS, default_label_names
from .card import model_card

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "README.md"
PUBLISHED_FILES = [CONFIG_NAME, WEIGHTS_NAME, CARD_NAME]
PICKLE_SUFFIXES = {".bin", ".ckpt", ".pt", ".pth", ".pkl", ".pickle"}
#: 2: the synthetic flag is called ``synthetic`` (version 1 called it ``synthetic_data``).
CONFIG_VERSION = 2
#: The keys that rebuild the model (``zoo.factory.build_model``); a model's ``model_config`` holds exactly these.
ARCHITECTURE_KEYS = ("architecture", "model_params", "num_classes", "transform", "transform_params", "sample_rate")
#: Where the weights came from: the data module's ``provenance`` (dataset, split, synthetic).
PROVENANCE_KEYS = ("dataset", "split", "synthetic")
METADATA_DEFAULTS = {"chunk_seconds": DEFAULT_CHUNK_SECONDS, "task": "multiclass", "label_names": None,
                     "dataset": None, "split": None, "synthetic": None, "metrics": {}}
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


class HubError(ValueError):
    """A model folder, Hub repository or checkpoint that cannot be loaded; the message names it and says why."""


class UnsafeCheckpointError(HubError):
    """Only pickled weights were found; they are never unpickled (that can run arbitrary code)."""


# ---- reading --------------------------------------------------------------------------
def resolve_folder(path_or_hub_id: str | Path) -> Path:
    """A local published folder, or a Hub repository fetched (config, weights, card only) into the HF cache.

    Offline, ``snapshot_download`` answers from the local cache when the repository was
    fetched before; otherwise the error says the repository could not be fetched.
    """
    path = Path(path_or_hub_id)
    if path.is_dir():
        return path
    source = str(path_or_hub_id)
    if not _HUB_ID.fullmatch(source):
        raise HubError(f"{source!r} is neither a folder nor a Hugging Face Hub id (owner/name)")
    try:
        return Path(snapshot_download(source, allow_patterns=PUBLISHED_FILES))
    except Exception as e:  # network, authentication, missing repository, missing cache entry
        raise HubError(
            f"{source!r} is not a local folder and could not be fetched from the Hugging Face Hub "
            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}). Offline, only repositories "
            f"already in the local Hugging Face cache can be loaded."
        ) from e


def read_config(folder: Path) -> dict:
    """``config.json`` of a published folder, upgraded to the current version; refuses folders
    that only hold pickled weights."""
    folder = Path(folder)
    weights = folder / WEIGHTS_NAME
    if not weights.is_file():
        pickles = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES)
        if pickles:
            raise UnsafeCheckpointError(
                f"{folder}: no {WEIGHTS_NAME}, only pickled weights ({', '.join(pickles)}), which are never "
                f"loaded because unpickling can run arbitrary code. Convert a checkpoint you trust with "
                f"`musiczoo publish CKPT OUT_DIR`."
            )
        raise HubError(f"{folder}: no {WEIGHTS_NAME}; not a published musiczoo model")
    try:
        config = json.loads((folder / CONFIG_NAME).read_text())
    except FileNotFoundError:
        raise HubError(f"{folder}: no {CONFIG_NAME}; not a published musiczoo model") from None
    except json.JSONDecodeError as e:
        raise HubError(f"{folder / CONFIG_NAME}: invalid JSON ({e})") from None
    missing = [k for k in ("architecture", "transform", "transform_params", "sample_rate", "num_classes", "label_names", "task") if k not in config]
    if missing:
        raise HubError(f"{folder / CONFIG_NAME}: missing {', '.join(missing)}")
    return upgrade_config(config)


def upgrade_config(config: dict) -> dict:
    """A config.json of any earlier version in the current schema (folders published before stay loadable)."""
    config = dict(config)
    if config.get("musiczoo_config_version", 1) < 2 and "synthetic_data" in config:
        config["synthetic"] = config.pop("synthetic_data")
    config["musiczoo_config_version"] = CONFIG_VERSION
    return config


def read_weights(folder: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(Path(folder) / WEIGHTS_NAME)
    except Exception as e:
        raise HubError(f"{Path(folder) / WEIGHTS_NAME}: not a valid safetensors file ({e})") from None


# ---- writing --------------------------------------------------------------------------
def package_versions() -> dict[str, str | None]:
    versions = {}
    for name in ("musiczoo", "torch", "torchaudio", "lightning", "timm"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_commit() -> str | None:
    """Commit of the source tree this package runs from (``+dirty`` with uncommitted changes), if it is a git checkout."""
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{sha}+dirty" if dirty else sha or None


def make_config(model, **meta) -> dict:
    """config.json for ``model``: its architecture (``model.model_config``), then metadata
    (defaults < what the model carries from loading < ``meta``), then the versions and commit
    of the software writing it."""
    unknown = set(meta) - set(METADATA_DEFAULTS)
    if unknown:
        raise TypeError(f"unknown metadata {sorted(unknown)}; known: {sorted(METADATA_DEFAULTS)}")
    carried = getattr(model, "config", None) or {}
    config = {"musiczoo_config_version": CONFIG_VERSION, **{k: model.model_config[k] for k in ARCHITECTURE_KEYS}}
    for key, default in METADATA_DEFAULTS.items():
        config[key] = meta.get(key, carried.get(key, default))
    config["task"] = meta.get("task", getattr(model, "task", None) or config["task"])
    config["label_names"] = list(meta.get("label_names") or getattr(model, "label_names", None) or config["label_names"]
                                 or default_label_names(config["num_classes"]))
    metrics = config["metrics"] or {}
    if not isinstance(metrics, dict) or not all(isinstance(v, (int, float)) for v in metrics.values()):
        raise ValueError(f"metrics must be a flat {{name: number}} mapping, got {metrics!r}")
    config["metrics"] = {str(k): float(v) for k, v in metrics.items()}
    if len(config["label_names"]) != config["num_classes"]:
        raise ValueError(f"{len(config['label_names'])} label names for {config['num_classes']} classes")
    if config["task"] not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {config['task']!r}")
    if not config["chunk_seconds"] > 0:
        raise ValueError(f"chunk_seconds must be positive, got {config['chunk_seconds']!r}")
    config["num_parameters"] = sum(p.numel() for p in model.parameters())
    config["versions"] = package_versions()
    config["git_commit"] = git_commit()
    return config


def save_pretrained(model, out_dir: str | Path, *, model_id: str | None = None, **meta) -> Path:
    """Write ``model.safetensors``, ``config.json`` and ``README.md`` to ``out_dir``.

    ``meta`` sets metadata (``chunk_seconds, task, label_names, dataset, split, synthetic,
    metrics``) over what the model carries; ``model_id`` is the name the card's usage
    examples load it by (a Hub id; default: the folder path).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = make_config(model, **meta)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, out / WEIGHTS_NAME, metadata={"format": "pt"})
    (out / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
    (out / CARD_NAME).write_text(model_card(config, model_id or str(out)))
    return out


def push_to_hub(folder: str | Path, repo_id: str, *, private: bool | None = None) -> str:
    """Upload a published folder's three files to the Hub model repository ``repo_id`` (created if needed)."""
    folder = Path(folder)
    read_config(folder)  # refuse to upload something from_pretrained could not load
    api = HfApi()
    api.create_repo(repo_id, repo_type="model", exist_ok=True, private=private)
    api.upload_folder(repo_id=repo_id, folder_path=folder, repo_type="model", allow_patterns=PUBLISHED_FILES,
                      commit_message="Upload musiczoo model")
    return f"https://huggingface.co/{repo_id}"
