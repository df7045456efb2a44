"""Publish and load models safely: ``model.safetensors`` + ``config.json`` + a model card.

A published folder (or a Hugging Face Hub repository holding one) is the only thing
``from_pretrained`` reads, and it reads it without unpickling anything:

* ``model.safetensors``: the model's state_dict. The front-end's filterbanks are
  non-persistent buffers rebuilt from the config, so they are not in it.
* ``config.json``: everything needed to rebuild the model (architecture and its
  parameters, transform and all its parameters, sample rate) and to use it (chunk length,
  task, label names), plus where it came from (dataset, split, whether the training data
  was synthetic, test metrics, package versions, git commit).
* ``README.md``: a model card in the Hugging Face format, generated from the config.

Pickles (``pytorch_model.bin``, ``.ckpt``) can run arbitrary code when loaded, so a
folder holding only a pickle is refused. A Lightning ``.ckpt`` you trained yourself is
read with ``torch.load(weights_only=True)`` (tensors and plain data only) by
``load_checkpoint`` and turned into a published folder by ``publish``.

Pretrained names follow timm: ``"arch.tag"`` keys of ``PRETRAINED`` map to a source (Hub id
or local folder) together with the preprocessing the weights expect, so
``create_model("crnn", pretrained="tag", ...)`` can refuse a model built with another
sample rate or transform instead of silently producing garbage.
"""

from __future__ import annotations

import argparse
import fnmatch
import importlib.metadata
import json
import logging
import math
import pathlib
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml
from huggingface_hub import HfApi, snapshot_download
from safetensors.torch import load_file, save_file

from .frontends import UnknownNameError
from .registry import create_model

log = logging.getLogger(__name__)

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "README.md"
PUBLISHED_FILES = [CONFIG_NAME, WEIGHTS_NAME, CARD_NAME]
PICKLE_SUFFIXES = {".bin", ".ckpt", ".pt", ".pth", ".pkl", ".pickle"}
DEFAULT_CHUNK_SECONDS = 3.0
CONFIG_VERSION = 1
TASKS = ("multiclass", "multilabel")
# Checkpoints written through LightningCLI hold ``pathlib`` paths among the data module's
# hyperparameters; these classes only hold strings, so allowing them keeps loading safe.
_SAFE_CHECKPOINT_GLOBALS = [pathlib.PosixPath, pathlib.PurePosixPath, pathlib.WindowsPath, pathlib.PureWindowsPath]
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


class HubError(ValueError):
    """A model folder, Hub repository or checkpoint that cannot be loaded; the message names it and says why."""


class UnsafeCheckpointError(HubError):
    """Only pickled weights were found; they are never unpickled (that can run arbitrary code)."""


# ---- pretrained names ------------------------------------------------------------------
@dataclass(frozen=True)
class PretrainedEntry:
    """Where ``arch.tag`` weights live and the preprocessing they were trained with.

    ``source`` is a Hub id (``owner/name``) or a local published folder. ``transform_params``
    lists only the settings that must match (others are free). ``uploaded=False`` marks an
    intended Hub id that does not exist yet, so a failed download says so instead of
    pointing at the network.
    """

    source: str
    sample_rate: int
    transform: str
    num_classes: int
    transform_params: dict = field(default_factory=dict)
    chunk_seconds: float = DEFAULT_CHUNK_SECONDS
    task: str = "multiclass"
    label_names: tuple[str, ...] = ()
    dataset: str | None = None
    split: str | None = None
    uploaded: bool = True

    def __post_init__(self):
        if self.label_names and len(self.label_names) != self.num_classes:
            raise ValueError(f"{len(self.label_names)} label names for {self.num_classes} classes")
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")


# No musiczoo weights have been published yet, so the table starts empty rather than
# naming Hub repositories that do not exist. Add entries with ``register_pretrained``.
PRETRAINED: dict[str, PretrainedEntry] = {}


def register_pretrained(name: str, entry: PretrainedEntry, *, overwrite: bool = False) -> PretrainedEntry:
    """Add ``"arch.tag"`` to ``PRETRAINED`` (``create_model(arch, pretrained=tag)`` then finds it)."""
    arch, _, tag = name.partition(".")
    if not arch or not tag:
        raise ValueError(f"pretrained names are 'arch.tag', got {name!r}")
    if name in PRETRAINED and not overwrite:
        raise ValueError(f"pretrained {name!r} is already registered (pass overwrite=True to replace it)")
    PRETRAINED[name] = entry
    return entry


def list_pretrained(pattern: str = "*") -> list[str]:
    """Registered ``arch.tag`` names matching a glob pattern, e.g. ``"crnn.*"`` or ``"*gtzan*"``."""
    return sorted(n for n in PRETRAINED if fnmatch.fnmatch(n, pattern))


def _entry_expectations(arch: str, entry: PretrainedEntry) -> dict:
    expected = {
        "architecture": arch,
        "sample_rate": entry.sample_rate,
        "transform": entry.transform,
        "num_classes": entry.num_classes,
        "transform_params": entry.transform_params,
        "task": entry.task,
    }
    if entry.label_names:
        expected["label_names"] = list(entry.label_names)
    return expected


def _mismatches(expected: dict, actual: dict) -> list[str]:
    """Preprocessing settings that differ; ``transform_params`` is compared on the expected keys only."""
    bad = []
    for key, want in expected.items():
        if key == "transform_params":
            for p, v in want.items():
                have = actual["transform_params"].get(p)
                if not _same(v, have):
                    bad.append(f"transform_params.{p}={v!r} (got {have!r})")
        elif not _same(want, actual.get(key)):
            bad.append(f"{key}={want!r} (got {actual.get(key)!r})")
    return bad


def _same(a, b) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return a == b


def load_pretrained_weights(model: torch.nn.Module, name: str, tag: str) -> None:
    """Fill ``model`` (built by ``create_model(name, ...)``) with the weights ``tag`` names.

    ``tag`` is either a tag of ``PRETRAINED["name.tag"]`` or a path to a published folder.
    The model's preprocessing (sample rate, transform and its parameters, number of
    classes) must match what the weights were trained with; otherwise the error lists
    every difference. Label names, task and config are attached to the model.
    """
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
    actual = _architecture_config(model)
    bad = _mismatches({k: config[k] for k in ("architecture", "sample_rate", "transform", "num_classes", "transform_params")}, actual)
    if bad:
        raise HubError(
            f"pretrained {source!r} does not fit the model that was built: the weights expect "
            f"{'; '.join(bad)}. Build the model with those settings, or load it with from_pretrained({source!r})."
        )
    _load_state(model, _read_weights(folder), folder)
    _attach(model, config)


def _pretrained_folder(name: str) -> Path:
    """Download (or find in the cache) the folder of a registered entry and check it against the entry."""
    entry = PRETRAINED[name]
    try:
        folder = resolve_folder(entry.source)
    except HubError as e:
        if not entry.uploaded:
            raise HubError(f"pretrained {name!r}: its weights are not yet uploaded to {entry.source!r}") from e
        raise
    bad = _mismatches(_entry_expectations(name.split(".", 1)[0], entry), read_config(folder))
    if bad:
        raise HubError(f"pretrained {name!r}: the folder at {entry.source!r} disagrees with the registered entry: {'; '.join(bad)}")
    return folder


# ---- reading published folders -------------------------------------------------------
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
    """``config.json`` of a published folder; refuses folders that only hold pickled weights."""
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
    return config


def _read_weights(folder: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(Path(folder) / WEIGHTS_NAME)
    except Exception as e:
        raise HubError(f"{Path(folder) / WEIGHTS_NAME}: not a valid safetensors file ({e})") from None


def _load_state(model: torch.nn.Module, state: dict, source) -> None:
    try:
        model.load_state_dict(state)  # strict: every weight present, nothing left over
    except RuntimeError as e:
        raise HubError(f"{source}: the weights do not fit the architecture built from the config: {e}") from None


def _attach(model: torch.nn.Module, config: dict) -> None:
    """The metadata a loaded model carries (used by ``predict`` and ``save_pretrained``)."""
    model.label_names = list(config["label_names"])
    model.task = config["task"]
    model.config = config
    model.eval()


def _build_model(config: dict):
    """An untrained model with the architecture a config describes."""
    return create_model(
        config["architecture"], transform=config["transform"], num_classes=config["num_classes"],
        sample_rate=config["sample_rate"], transform_params=config["transform_params"], **config.get("model_params", {}),
    )


def from_pretrained(path_or_hub_id: str | Path):
    """Load a published model (folder, Hub id ``owner/name`` or ``arch.tag`` name) in eval mode.

    Reads only ``config.json`` and ``model.safetensors``; the returned model has
    ``label_names``, ``task`` and ``config`` attached.
    """
    source = str(path_or_hub_id)
    if not Path(source).is_dir() and source in PRETRAINED:
        folder = _pretrained_folder(source)
    else:
        folder = resolve_folder(path_or_hub_id)
    config = read_config(folder)
    model = _build_model(config)
    _load_state(model, _read_weights(folder), folder)
    _attach(model, config)
    return model


# ---- Lightning checkpoints -------------------------------------------------------------
def load_checkpoint_dict(path: str | Path) -> dict:
    """A Lightning checkpoint as plain data, loaded with ``weights_only=True`` (no code runs)."""
    path = Path(path)
    if not path.is_file():
        raise HubError(f"{path}: no such checkpoint")
    try:
        with torch.serialization.safe_globals(_SAFE_CHECKPOINT_GLOBALS):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        reason = next((line.strip() for line in str(e).splitlines() if "Unsupported global" in line), str(e).splitlines()[0] if str(e) else "")
        raise HubError(
            f"{path}: refused to load: it is not a checkpoint of tensors and plain data ({type(e).__name__}: {reason}). "
            f"Only weights-only loading is used, because unpickling arbitrary objects can run code."
        ) from None


def load_checkpoint(path: str | Path):
    """Rebuild the model of a ``MusicTask`` Lightning checkpoint (weights-only loading) in eval mode.

    The metadata comes from the checkpoint: label names and task from the task's
    hyperparameters; chunk length (``clip_seconds``), dataset and split from the data
    module's hyperparameters when it saved them.
    """
    ckpt = load_checkpoint_dict(path)
    hp = ckpt.get("hyper_parameters") or {}
    missing = [k for k in ("model", "transform", "num_classes", "sample_rate") if k not in hp]
    if missing or "state_dict" not in ckpt:
        raise HubError(f"{path}: not a musiczoo MusicTask checkpoint (missing {', '.join(missing) or 'state_dict'})")
    model = create_model(
        hp["model"], transform=hp["transform"], num_classes=hp["num_classes"], sample_rate=hp["sample_rate"],
        transform_params=hp.get("transform_params"), **(hp.get("model_params") or {}),
    )
    _load_state(model, {k[len("net."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("net.")}, path)
    labels = hp.get("label_names") or [str(i) for i in range(hp["num_classes"])]
    dm = ckpt.get("datamodule_hyper_parameters") or {}
    if not dm:
        log.warning("%s records no data module hyperparameters: assuming %g-second chunks; dataset, split and "
                    "synthetic data unknown (musiczoo publish takes --chunk-seconds, --dataset, --split, --synthetic)",
                    path, DEFAULT_CHUNK_SECONDS)
    _attach(model, {
        **_architecture_config(model),
        "task": hp.get("task", "multiclass"),
        "label_names": list(labels),
        **_data_provenance(dm),
    })
    return model


def _data_provenance(dm: dict) -> dict:
    """Chunk length, dataset, split and synthetic flag from a data module's saved hyperparameters.

    The dataset name is the data module's ``dataset``/``name`` hyperparameter, else the
    module its class lives in (LightningCLI records ``_class_path``, e.g.
    ``datamodules.gtzan.GTZANDataModule`` -> ``gtzan``). Training data counts as synthetic
    when the data module says so (``synthetic``) or its class path or data root mentions
    "synthetic": a false "synthetic" is a harmless warning, a missed one is a misleading card.
    """
    class_path = str(dm.get("_class_path") or "")
    dataset = dm.get("dataset") or dm.get("name") or (class_path.split(".")[-2] if "." in class_path else None)
    known = bool(dm)
    synthetic = bool(dm.get("synthetic")) or any("synthetic" in str(dm.get(k) or "").lower() for k in ("_class_path", "root", "dataset", "name"))
    return {
        "chunk_seconds": float(dm.get("clip_seconds") or DEFAULT_CHUNK_SECONDS),
        "dataset": None if dataset is None else str(dataset),
        "split": None if dm.get("split") is None else str(dm.get("split")),
        "synthetic_data": synthetic if known else None,
    }


# ---- writing published folders ---------------------------------------------------------
def _architecture_config(model) -> dict:
    mc = model.model_config
    return {
        "architecture": mc["name"],
        "model_params": mc["model_params"],
        "num_classes": mc["num_classes"],
        "transform": mc["transform"],
        "transform_params": mc["transform_params"],
        "sample_rate": mc["sample_rate"],
    }


METADATA_DEFAULTS = {
    "chunk_seconds": DEFAULT_CHUNK_SECONDS, "task": "multiclass", "label_names": None,
    "dataset": None, "split": None, "synthetic_data": None, "metrics": {},
}


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
    """config.json for ``model``: its architecture, then metadata (defaults < what the model
    carries from loading < ``meta``), then the versions and commit of the software writing it."""
    unknown = set(meta) - set(METADATA_DEFAULTS)
    if unknown:
        raise TypeError(f"unknown metadata {sorted(unknown)}; known: {sorted(METADATA_DEFAULTS)}")
    carried = getattr(model, "config", None) or {}
    config = {"musiczoo_config_version": CONFIG_VERSION, **_architecture_config(model)}
    for key, default in METADATA_DEFAULTS.items():
        config[key] = meta.get(key, carried.get(key, default))
    config["task"] = meta.get("task", getattr(model, "task", None) or config["task"])
    config["label_names"] = list(meta.get("label_names") or getattr(model, "label_names", None) or config["label_names"]
                                 or [str(i) for i in range(config["num_classes"])])
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

    ``meta`` sets metadata (``chunk_seconds, task, label_names, dataset, split,
    synthetic_data, metrics``) over what the model carries; ``model_id`` is the name the
    card's usage examples load it by (a Hub id; default: the folder path).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = make_config(model, **meta)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, out / WEIGHTS_NAME, metadata={"format": "pt"})
    (out / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
    (out / CARD_NAME).write_text(model_card(config, model_id or str(out)))
    return out


# ---- the model card --------------------------------------------------------------------
_METRIC_IDS = {"acc": "accuracy", "f1_macro": "f1", "roc_auc": "roc_auc", "pr_auc": "pr_auc"}
_TASK_TAGS = {"multiclass": "genre-classification", "multilabel": "music-tagging"}
_DATASET_NOTES = {
    "gtzan": "GTZAN has known faults (repeated excerpts, mislabelled and distorted clips; Sturm 2013) and "
             "artist overlap between random splits; only the fault-filtered split (Kereliuk & Sturm) gives "
             "numbers comparable with the literature, random or k-fold splits inflate them.",
    "mtat": "MagnaTagATune tags are noisy, unbalanced and partly synonymous (e.g. 'female', 'woman'); "
            "a missing tag does not mean the tag does not apply.",
}


def model_card(config: dict, model_id: str) -> str:
    """A Hugging Face model card: YAML metadata, usage, training data, results, limitations."""
    arch, transform, task = config["architecture"], config["transform"], config["task"]
    dataset, synthetic = config.get("dataset"), config.get("synthetic_data")
    metrics = config.get("metrics") or {}
    header = {
        "library_name": "musiczoo",
        "pipeline_tag": "audio-classification",
        "tags": ["audio-classification", "music", task, _TASK_TAGS[task], arch, transform] + (["synthetic-data"] if synthetic else []),
    }
    if dataset:
        header["datasets"] = [f"synthetic-{dataset}" if synthetic and "synthetic" not in dataset else dataset]
    if metrics:
        header["metrics"] = sorted({_METRIC_IDS.get(k.split("/")[-1], k.split("/")[-1]) for k in metrics})
    data_name = f"synthetic {dataset or 'data'}" if synthetic else dataset or "an unrecorded dataset"
    split = f", split `{config['split']}`" if config.get("split") else ""
    what = {"multiclass": "music genre classification (one label per clip, softmax)",
            "multilabel": "music auto-tagging (independent tags, sigmoid)"}[task]
    labels = config["label_names"]
    lines = [
        "---", yaml.safe_dump(header, sort_keys=False).strip(), "---", "",
        f"# {arch} on {transform} features: {data_name}", "",
        f"A musiczoo model for {what} from raw audio. The {transform} front-end is the model's first "
        f"layer, so the model takes a mono waveform at {config['sample_rate']} Hz and returns "
        f"{config['num_classes']} logits; files are cut into {config['chunk_seconds']:g}-second chunks "
        f"and the chunk probabilities are averaged.", "",
    ]
    if synthetic:
        lines += ["> **This model was trained on synthetic data** (generated signals, not recorded music). "
                  "It exists to test the pipeline; its predictions on real music mean nothing.", ""]
    lines += [
        "## Usage", "", "```python", "from zoo.hub import from_pretrained", "",
        f"model = from_pretrained({model_id!r})",
        'print(model.predict("song.mp3"))  # {label: probability}', "```", "",
        "```bash", f"musiczoo predict {shlex.quote(model_id)} song.mp3 my_music/ --top-k 3", "```", "",
        "## Model", "",
        "| architecture | transform | sample rate | chunk | parameters | task |", "|---|---|---|---|---|---|",
        f"| {arch} | {transform} | {config['sample_rate']} Hz | {config['chunk_seconds']:g} s | "
        f"{config.get('num_parameters', 0) / 1e6:.2f} M | {task} |", "",
        f"Transform parameters: `{json.dumps(config['transform_params'])}`; model parameters: "
        f"`{json.dumps(config.get('model_params', {}))}`.", "",
        f"Labels ({len(labels)}): {', '.join(f'`{n}`' for n in labels)}.", "",
        "## Training data", "",
    ]
    if synthetic:
        layout = f" in the on-disk layout of {dataset}{split}" if dataset else split
        lines.append(f"Generated audio{layout}: the training data was synthetic, not real music.")
    elif dataset:
        lines.append(f"{dataset}{split}.")
    else:
        lines.append("Not recorded.")
    lines += ["", "## Results", ""]
    if metrics:
        lines += ["| metric | value |", "|---|---|"] + [f"| {k} | {v:.4f} |" for k, v in sorted(metrics.items())]
        lines.append("\nClip-level metrics (mean of the chunk probabilities of each clip) on the test split.")
    else:
        lines.append("No test results were recorded with this model.")
    lines += [
        "", "## Limitations", "",
        f"- Audio is mixed down to mono and resampled to {config['sample_rate']} Hz; anything above "
        f"{config['sample_rate'] // 2} Hz is ignored.",
        "- The model always answers with its own label set: speech, silence or music outside the training "
        "data still get confident-looking probabilities" + (" that sum to 1." if task == "multiclass" else "."),
        "- Labels reflect the training dataset's taxonomy and annotators, and its biases in genre, era and culture.",
    ]
    note = _DATASET_NOTES.get((dataset or "").lower().replace("synthetic_", "").replace("synthetic-", ""))
    if note and not synthetic:
        lines.append(f"- {note}")
    if synthetic:
        lines.append("- Trained on synthetic data: not for use on real music.")
    lines += [
        "", "## Reproducibility", "",
        f"Written by musiczoo {config['versions'].get('musiczoo')} (torch {config['versions'].get('torch')}, "
        f"torchaudio {config['versions'].get('torchaudio')}, lightning {config['versions'].get('lightning')}, "
        f"timm {config['versions'].get('timm')}); source commit `{config.get('git_commit') or 'unknown'}`. "
        "Everything needed to rebuild the model is in `config.json`.", "",
    ]
    return "\n".join(lines)


# ---- publishing --------------------------------------------------------------------------
def publish(ckpt_path: str | Path, out_dir: str | Path, push_to_hub: str | None = None, *,
            metrics: dict | None = None, **meta) -> Path:
    """Turn a Lightning checkpoint into a published folder (and optionally upload it).

    Test metrics come from ``metrics`` or, when not given, from a ``metrics.json`` (a flat
    ``{name: value}`` object) next to the checkpoint; without either the card says no
    results were recorded. ``meta`` overrides metadata read from the checkpoint
    (``dataset``, ``split``, ``synthetic_data``, ``chunk_seconds``).
    """
    ckpt_path = Path(ckpt_path)
    model = load_checkpoint(ckpt_path)
    if metrics is None and (ckpt_path.parent / "metrics.json").is_file():
        metrics = json.loads((ckpt_path.parent / "metrics.json").read_text())
    if metrics is not None:
        meta["metrics"] = metrics
    out = save_pretrained(model, out_dir, model_id=push_to_hub, **meta)
    if push_to_hub:
        _push_folder(out, push_to_hub)
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


_push_folder = push_to_hub  # publish's argument of the same name hides the function inside it


def cmd_publish(argv: list[str]) -> None:
    """``musiczoo publish CKPT OUT_DIR [--push-to-hub REPO_ID]``."""
    parser = argparse.ArgumentParser(prog="musiczoo publish", description=(
        "Convert a Lightning checkpoint (read weights-only) into model.safetensors + config.json + "
        "README.md model card, and optionally upload it to the Hugging Face Hub."))
    parser.add_argument("ckpt", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--push-to-hub", metavar="REPO_ID", help="upload to this Hub model repository (owner/name)")
    parser.add_argument("--metrics", type=Path, help="JSON file {name: value} of test metrics (default: metrics.json next to CKPT)")
    parser.add_argument("--dataset", help="training dataset name, if the checkpoint does not record it")
    parser.add_argument("--split", help="training split name, if the checkpoint does not record it")
    parser.add_argument("--chunk-seconds", type=float, help="training crop length, if the checkpoint does not record it")
    parser.add_argument("--synthetic", action="store_true", help="mark the training data as synthetic")
    args = parser.parse_args(argv)
    meta = {k: v for k, v in (("dataset", args.dataset), ("split", args.split), ("chunk_seconds", args.chunk_seconds)) if v}
    if args.synthetic:
        meta["synthetic_data"] = True
    try:
        metrics = json.loads(args.metrics.read_text()) if args.metrics else None
        out = publish(args.ckpt, args.out_dir, args.push_to_hub, metrics=metrics, **meta)
    except (ValueError, OSError) as e:  # HubError, UnknownNameError and bad JSON are ValueErrors
        sys.exit(f"musiczoo publish: error: {e}")
    print(f"published to {out}" + (f" and https://huggingface.co/{args.push_to_hub}" if args.push_to_hub else ""))


__all__ = [
    "PRETRAINED", "PretrainedEntry", "register_pretrained", "list_pretrained", "load_pretrained_weights",
    "from_pretrained", "save_pretrained", "load_checkpoint", "publish", "push_to_hub", "model_card",
    "HubError", "UnsafeCheckpointError", "cmd_publish",
]
