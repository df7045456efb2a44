"""The published folder: ``model.safetensors`` + ``config.json`` + ``README.md``; read, write, push.

A published folder (or a Hugging Face Hub repository holding one) is the only thing
``zoo.from_pretrained`` reads, and it is read without unpickling anything:

* ``model.safetensors``: the model's state_dict. The front-end's filterbanks are
  non-persistent buffers rebuilt from the config, so they are not in it.
* ``config.json``: the model's spec (``zoo.spec.ModelSpec.to_config``: everything needed to
  rebuild and use it, and where its weights came from) plus a record of what wrote it
  (parameter count, package versions, git commit).
* ``README.md``: the model card (``zoo.card``), generated from the spec.

Pickles (``pytorch_model.bin``, ``.ckpt``) can run arbitrary code when loaded, so a folder
holding only a pickle is refused. This module does file and network I/O only; building a
model from a spec is ``zoo.factory``'s job, Lightning checkpoints are ``zoo.checkpoint``'s.
"""

from __future__ import annotations

import difflib
import importlib.metadata
import json
import logging
import re
import subprocess
from pathlib import Path

import torch
from huggingface_hub import HfApi, snapshot_download
from safetensors.torch import load_file, save_file

from datamodules.primitives.files import read_json, write_atomically

from .card import model_card
from .spec import CONFIG_NAME, CONFIG_VERSION, REQUIRED_KEYS, ModelError, ModelSpec, validate_config

WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "README.md"
PUBLISHED_FILES = [CONFIG_NAME, WEIGHTS_NAME, CARD_NAME]
PICKLE_SUFFIXES = {".bin", ".ckpt", ".pt", ".pth", ".pkl", ".pickle"}
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
#: Prefixes that say "this is a Hugging Face Hub id" explicitly (``hf://owner/name``, ``hf-hub:owner/name``).
HUB_PREFIXES = ("hf://", "hf-hub:")

log = logging.getLogger(__name__)


class UnsafeCheckpointError(ModelError):
    """Only pickled weights were found; they are never unpickled (that can run arbitrary code)."""


# ---- reading --------------------------------------------------------------------------
def is_hub_id(text: str) -> bool:
    """Whether ``text`` has the shape of a Hugging Face Hub id (``owner/name``)."""
    return bool(_HUB_ID.fullmatch(str(text)))


def hub_id_of(spec: str | Path) -> str | None:
    """The Hub id ``spec`` names, or None when it names a local folder.

    Only an unambiguous string is a Hub id: ``hf://owner/name`` or ``hf-hub:owner/name``,
    or a bare ``owner/name`` when nothing exists locally at that path and ``owner`` is not
    a local folder (so ``runs/pubx``, a typo of ``runs/pub``, is never downloaded). Anything
    else that names no local folder is an error that suggests the close local names.
    """
    source = str(spec)
    for prefix in HUB_PREFIXES:
        if source.startswith(prefix):
            repo_id = source[len(prefix):]
            if not _HUB_ID.fullmatch(repo_id):
                raise ModelError(f"{source!r}: {prefix} must be followed by a Hugging Face Hub id (owner/name)")
            return repo_id
    path = Path(source).expanduser()
    if path.is_dir():
        return None
    if path.exists():
        raise ModelError(f"{source} is a file, not a published model folder (model.safetensors + config.json + README.md)")
    if _HUB_ID.fullmatch(source) and not Path(source.split("/", 1)[0]).expanduser().is_dir():
        return source
    hint = _close_folders(path)
    if _HUB_ID.fullmatch(source):  # owner/name-shaped, but its first part is a local folder
        raise ModelError(f"no published model folder {source}{hint}; {source.split('/', 1)[0]}/ is a local folder, so "
                       f"this is not taken as a Hugging Face Hub id (write hf://{source} to fetch it from the Hub)")
    raise ModelError(f"no published model folder {source}{hint}: {source!r} is neither a folder nor a Hugging Face Hub "
                   f"id (owner/name, or hf://owner/name)")


def _close_folders(path: Path) -> str:
    """`` (did you mean a, b?)``: the folders closest to ``path``, found by correcting its first
    missing part among the folders beside it (difflib), or nothing."""
    parts = path.parts
    i = len(parts) - 1
    while i > 0 and not Path(*parts[:i]).is_dir():
        i -= 1
    base = Path(*parts[:i]) if i else Path(".")
    try:
        siblings = [p.name for p in base.iterdir() if p.is_dir()]
    except OSError:
        return ""
    close = difflib.get_close_matches(parts[i], siblings, n=3, cutoff=0.6)
    rest = parts[i + 1:]
    candidates = [base.joinpath(name, *rest) for name in close]
    shown = [c for c in candidates if c.is_dir()] or [base / name for name in close]
    return f" (did you mean {', '.join(map(str, shown))}?)" if shown else ""


def resolve_folder(path_or_hub_id: str | Path) -> Path:
    """A local published folder, or a Hub repository fetched (config, weights, card only) into the HF cache.

    Which of the two a string names is decided by :func:`hub_id_of`. Offline,
    ``snapshot_download`` answers from the local cache when the repository was fetched
    before; otherwise the error says the repository could not be fetched.
    """
    repo_id = hub_id_of(path_or_hub_id)
    if repo_id is None:
        return Path(path_or_hub_id).expanduser()
    log.info("fetching %s from the Hugging Face Hub", repo_id)
    try:
        return Path(snapshot_download(repo_id, allow_patterns=PUBLISHED_FILES))
    except Exception as e:  # network, authentication, missing repository, missing cache entry
        raise ModelError(
            f"{repo_id!r} is not a local folder and could not be fetched from the Hugging Face Hub "
            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}). Offline, only repositories "
            f"already in the local Hugging Face cache can be loaded."
        ) from e


def read_config(folder: Path) -> dict:
    """``config.json`` of a published folder as written, upgraded to the current version (not yet
    checked against the schema); refuses folders that only hold pickled weights."""
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
        raise ModelError(f"{folder}: no {WEIGHTS_NAME}; not a published musiczoo model")
    source = folder / CONFIG_NAME
    config = read_json(source, ModelError, missing=f"{folder}: no {CONFIG_NAME}; not a published musiczoo model")
    if not isinstance(config, dict):
        raise ModelError(f"{source}: must hold a JSON object, got {type(config).__name__}")
    missing = [k for k in REQUIRED_KEYS if k not in config]
    if missing:
        raise ModelError(f"{source}: missing {', '.join(missing)}")
    return upgrade_config(validate_config(config, source, only=("musiczoo_config_version",)))


def read_spec(folder: Path) -> ModelSpec:
    """The spec of a published folder (``config.json`` read and checked against the schema once)."""
    return ModelSpec.from_config(read_config(folder), Path(folder) / CONFIG_NAME)


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
        raise ModelError(f"{Path(folder) / WEIGHTS_NAME}: not a valid safetensors file ({e})") from None


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


def published_config(spec: ModelSpec, num_parameters: int) -> dict:
    """config.json of a model: its spec, then the record of the software writing it (parameter
    count, package versions, source commit); checked against the schema before anything is written."""
    return validate_config({"musiczoo_config_version": CONFIG_VERSION, **spec.to_config(),
                            "num_parameters": num_parameters, "versions": package_versions(),
                            "git_commit": git_commit()}, CONFIG_NAME)


#: What ``save_pretrained`` may change in the spec it publishes (a checkpoint that did not record it).
PUBLISH_CHANGES = ("chunk_seconds", "task", "label_names", "dataset", "split", "synthetic", "metrics")


def save_pretrained(model, out_dir: str | Path, *, model_id: str | None = None, force: bool = False, **changes) -> Path:
    """Write ``model.safetensors``, ``config.json`` and ``README.md`` to ``out_dir``.

    ``changes`` set fields of the published spec over the model's own (``chunk_seconds, task,
    label_names, dataset, split, synthetic, metrics``); ``model_id`` is the name the card's usage
    examples load it by (a Hub id; default: the folder path).

    A folder that already holds anything is refused unless ``force``; then only the three
    files are replaced, each atomically (``datamodules.primitives.files.write_atomically``),
    and every other file is left alone.
    """
    unknown = set(changes) - set(PUBLISH_CHANGES)
    if unknown:
        raise TypeError(f"unknown metadata {sorted(unknown)}; known: {sorted(PUBLISH_CHANGES)}")
    if "metrics" in changes:
        changes["metrics"] = _flat_metrics(changes["metrics"])
    if "label_names" in changes:
        changes["label_names"] = tuple(changes["label_names"] or ())
    out = Path(out_dir)
    spec = model.spec.replace(**changes)
    config = published_config(spec, sum(p.numel() for p in model.parameters()))
    if out.exists() and not out.is_dir():
        raise ModelError(f"{out} is a file, not a folder to publish into")
    present = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if present and not force:
        shown = ", ".join(present[:5]) + (", ..." if len(present) > 5 else "")
        raise ModelError(f"{out} is not empty ({shown}); publish into a new folder, or pass --force (force=True) to "
                         f"replace its {', '.join(PUBLISHED_FILES)} and leave everything else in it alone")
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    write_atomically(out, {
        WEIGHTS_NAME: lambda path: save_file(state, path, metadata={"format": "pt"}),
        CONFIG_NAME: lambda path: path.write_text(json.dumps(config, indent=2) + "\n"),
        CARD_NAME: lambda path: path.write_text(model_card(spec, config, model_id or str(out))),
    })
    return out


def _flat_metrics(metrics) -> dict[str, float]:
    if metrics is None:
        return {}
    if not isinstance(metrics, dict) or not all(isinstance(v, (int, float)) for v in metrics.values()):
        raise ValueError(f"metrics must be a flat {{name: number}} mapping, got {metrics!r}")
    return {str(k): float(v) for k, v in metrics.items()}


def push_to_hub(folder: str | Path, repo_id: str, *, private: bool | None = None) -> str:
    """Upload a published folder's three files to the Hub model repository ``repo_id`` (created if needed)."""
    folder = Path(folder)
    read_spec(folder)  # refuse to upload something from_pretrained could not load
    api = HfApi()
    api.create_repo(repo_id, repo_type="model", exist_ok=True, private=private)
    api.upload_folder(repo_id=repo_id, folder_path=folder, repo_type="model", allow_patterns=PUBLISHED_FILES,
                      commit_message="Upload musiczoo model")
    return f"https://huggingface.co/{repo_id}"
