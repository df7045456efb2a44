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

import difflib
import importlib.metadata
import inspect
import json
import logging
import math
import os
import re
import secrets
import subprocess
from pathlib import Path

import torch
from huggingface_hub import HfApi, snapshot_download
from safetensors.torch import load_file, save_file

from .audio import DEFAULT_CHUNK_SECONDS, TASKS, default_label_names
from .card import model_card
from .frontends import FRONTENDS, Frontend, list_frontends

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
#: Prefixes that say "this is a Hugging Face Hub id" explicitly (``hf://owner/name``, ``hf-hub:owner/name``).
HUB_PREFIXES = ("hf://", "hf-hub:")

log = logging.getLogger(__name__)


class HubError(ValueError):
    """A model folder, Hub repository or checkpoint that cannot be loaded; the message names it and says why."""


class UnsafeCheckpointError(HubError):
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
                raise HubError(f"{source!r}: {prefix} must be followed by a Hugging Face Hub id (owner/name)")
            return repo_id
    path = Path(source).expanduser()
    if path.is_dir():
        return None
    if path.exists():
        raise HubError(f"{source} is a file, not a published model folder (model.safetensors + config.json + README.md)")
    if _HUB_ID.fullmatch(source) and not Path(source.split("/", 1)[0]).expanduser().is_dir():
        return source
    hint = _close_folders(path)
    if _HUB_ID.fullmatch(source):  # owner/name-shaped, but its first part is a local folder
        raise HubError(f"no published model folder {source}{hint}; {source.split('/', 1)[0]}/ is a local folder, so "
                       f"this is not taken as a Hugging Face Hub id (write hf://{source} to fetch it from the Hub)")
    raise HubError(f"no published model folder {source}{hint}: {source!r} is neither a folder nor a Hugging Face Hub "
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
        raise HubError(
            f"{repo_id!r} is not a local folder and could not be fetched from the Hugging Face Hub "
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
    if not isinstance(config, dict):
        raise HubError(f"{folder / CONFIG_NAME}: must hold a JSON object, got {type(config).__name__}")
    missing = [k for k in REQUIRED_KEYS if k not in config]
    if missing:
        raise HubError(f"{folder / CONFIG_NAME}: missing {', '.join(missing)}")
    source = folder / CONFIG_NAME
    return validate_config(upgrade_config(validate_config(config, source, only=("musiczoo_config_version",))), source)


# ---- the config schema ------------------------------------------------------------------
# One table of checks, used by every reader (read_config here, zoo.checkpoint for the config a
# checkpoint yields) and by make_config before anything is written. A check returns None when
# the value is fine, else what the value must be; the error is then one line naming the file
# and the field: "<file>: chunk_seconds must be a positive number of seconds ..., got 'abc'".
MAX_NUM_CLASSES = 100_000
SAMPLE_RATES = (1000, 384_000)
MAX_CHUNK_SECONDS = 600.0
#: The head (embedding x classes) and the whole model must stay below these parameter counts
#: (checked by ``zoo.factory.build_model`` before any weight is allocated).
MAX_HEAD_PARAMETERS = 100_000_000
MAX_PARAMETERS = 500_000_000
#: Keys a config.json must have (the others have defaults).
REQUIRED_KEYS = ("architecture", "transform", "transform_params", "sample_rate", "num_classes", "label_names", "task")
PAD_MODES = ("constant", "reflect", "replicate", "circular")
#: ``timm/<name>``: a plain timm architecture name; a source prefix (``hf-hub:``, ``local-dir:``) or a
#: path would make timm download or read files while the model is built.
_TIMM_NAME = re.compile(r"[A-Za-z0-9_][\w.-]*")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _integer(lo, hi, what="", note=""):
    expected = f"must be an integer{what} from {lo} to {hi}{note}"
    return lambda v, c: None if _is_int(v) and lo <= v <= hi else expected


def _optional(types: tuple, name: str):
    return lambda v, c: None if v is None or isinstance(v, types) else f"must be {name} or null"


def _one_of(choices_fn):
    def check(v, c):
        choices = choices_fn()
        return None if isinstance(v, str) and v in choices else f"must be one of {', '.join(choices)}"
    return check


def _check_architecture(v, c):
    if not isinstance(v, str) or not v:
        return "must be a model name (a string)"
    if v.startswith("timm/"):
        if not _TIMM_NAME.fullmatch(v[len("timm/"):]):
            return ("must be a plain timm architecture name such as timm/resnet18 (a Hub or local source such as "
                    "timm/hf-hub:... is refused: timm would download or read files while building the model)")
        return None
    from . import models  # noqa: F401  (the families register themselves; imported late: hub only reads names)
    from .registry import list_models

    names = list_models()
    return None if v in names else f"must be one of {', '.join(names)} or timm/<timm model>"


def _check_model_params(v, c):
    if not isinstance(v, dict) or not all(isinstance(k, str) and k.isidentifier() for k in v):
        return "must be an object of keyword arguments of the architecture"
    return None


def _check_chunk_seconds(v, c):
    ok = _is_number(v) and 0 < v <= MAX_CHUNK_SECONDS and v * c.get("sample_rate", 1) >= 1  # at least one sample
    return None if ok else f"must be a positive number of seconds (at most {MAX_CHUNK_SECONDS:g})"


def _check_label_names(v, c):
    if not isinstance(v, list) or not all(isinstance(n, str) and n for n in v):
        return "must be a list of non-empty strings, one per class"
    if len(v) != c.get("num_classes"):
        return _Worded(f"must name each of the {c.get('num_classes')} classes (num_classes), got {len(v)} names")
    if len(set(v)) != len(v):
        return "must not repeat a name"
    return None


def _check_metrics(v, c):
    ok = isinstance(v, dict) and all(isinstance(k, str) and isinstance(x, (int, float)) for k, x in v.items())
    return None if ok else "must be a flat {name: number} object"


def _hz(c) -> float:
    return c["sample_rate"] / 2


def _number_in(lo, hi_fn, what, lo_open=False):
    def check(v, params, c):
        hi = hi_fn(params, c)
        ok = _is_number(v) and (v > lo if lo_open else v >= lo) and v <= hi * (1 + 1e-9)
        return None if ok else f"{what} ({'above' if lo_open else 'from'} {lo:g} to {hi:g})"
    return check


def _int_in(lo, hi_fn, what):
    def check(v, params, c):
        hi = hi_fn(params, c)
        return None if _is_int(v) and lo <= v <= hi else f"{what} from {lo} to {hi}"
    return check


#: transform_params: each front-end parameter and what it must be (keys a front-end does not take are refused).
TRANSFORM_PARAM_CHECKS = {
    "n_fft": _int_in(16, lambda p, c: 32768, "must be an integer number of samples"),
    "hop_length": _int_in(1, lambda p, c: 32768, "must be an integer number of samples"),
    "n_mels": _int_in(1, lambda p, c: 512, "must be an integer number of Mel bands"),
    "n_mfcc": _int_in(1, lambda p, c: p.get("n_mels", 128) if _is_int(p.get("n_mels", 128)) else 512,
                      "must be an integer number of coefficients (at most n_mels)"),
    "f_min": _number_in(0, lambda p, c: _hz(c), "must be a frequency in Hz"),
    "f_max": lambda v, p, c: None if v is None else _number_in(
        p.get("f_min", 0) if _is_number(p.get("f_min", 0)) else 0, lambda p, c: _hz(c),
        "must be a frequency in Hz above f_min, at most half the sample rate", lo_open=True)(v, p, c),
    "top_db": lambda v, p, c: None if v is None else _number_in(0, lambda p, c: 1000, "must be null or a number of dB",
                                                                lo_open=True)(v, p, c),
    "pad_mode": lambda v, p, c: None if v in PAD_MODES else f"must be one of {', '.join(PAD_MODES)}",
}


def transform_param_names(transform: str) -> list[str]:
    """The parameters a front-end takes (its constructors' keywords, the sample rate aside)."""
    names = set()
    for cls in FRONTENDS[transform].__mro__:
        if isinstance(cls, type) and issubclass(cls, Frontend):
            names |= {p.name for p in inspect.signature(cls.__init__).parameters.values()
                      if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in ("self", "sample_rate")}
    return sorted(names)


def _check_transform_params(v, c):
    if not isinstance(v, dict):
        return "must be an object of front-end parameters"
    known = transform_param_names(c["transform"])
    for key, value in v.items():
        if key not in known:
            return _Worded(f"holds {key!r}, which the {c['transform']!r} front-end does not take "
                           f"(its parameters: {', '.join(known)})")
        check = TRANSFORM_PARAM_CHECKS.get(key)
        problem = check(value, v, c) if check else (None if _is_number(value) or value is None else "must be a number")
        if problem:
            return _Worded(f"{problem}, got {_shown(value)}", field=f"transform_params.{key}")
    return None


class _Worded(str):
    """A problem worded in full (validate_config appends no ``, got <value>``), optionally of a
    field inside the field checked (``transform_params.n_fft``)."""

    def __new__(cls, text: str, field: str | None = None):
        worded = super().__new__(cls, text)
        worded.field = field
        return worded


#: (field, required, check(value, config)); checked in this order, so a check may rely on the fields before it.
CONFIG_SCHEMA = [
    ("musiczoo_config_version", False, _integer(1, CONFIG_VERSION, note=" (a newer musiczoo writes higher versions)")),
    ("architecture", True, _check_architecture),
    ("model_params", False, _check_model_params),
    ("num_classes", True, _integer(1, MAX_NUM_CLASSES)),
    ("transform", True, _one_of(list_frontends)),
    ("sample_rate", True, _integer(SAMPLE_RATES[0], SAMPLE_RATES[1], " number of Hz")),
    ("transform_params", True, _check_transform_params),
    ("chunk_seconds", False, _check_chunk_seconds),
    ("task", True, _one_of(lambda: TASKS)),
    ("label_names", True, _check_label_names),
    ("dataset", False, _optional((str,), "a string")),
    ("split", False, _optional((str,), "a string")),
    ("synthetic", False, _optional((bool,), "true or false")),
    ("metrics", False, _check_metrics),
    ("num_parameters", False, _integer(0, 10**12)),
    ("versions", False, lambda v, c: None if isinstance(v, dict) else "must be an object"),
    ("git_commit", False, _optional((str,), "a string")),
]


def _shown(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def validate_config(config: dict, source: str | Path = CONFIG_NAME, *, only: tuple[str, ...] | None = None) -> dict:
    """``config`` if it fits the schema (``CONFIG_SCHEMA``), else a :class:`HubError` of one line naming
    ``source`` (the file) and the first field that does not fit. Runs before any model is built.
    ``only`` checks just those fields."""
    if not isinstance(config, dict):
        raise HubError(f"{source}: must hold a JSON object, got {type(config).__name__}")
    for field, required, check in CONFIG_SCHEMA:
        if only is not None and field not in only:
            continue
        if field not in config:
            if required:
                raise HubError(f"{source}: missing {field}")
            continue
        problem = check(config[field], config)
        if problem:
            if isinstance(problem, _Worded):
                raise HubError(f"{source}: {problem.field or field} {problem}")
            raise HubError(f"{source}: {field} {problem}, got {_shown(config[field])}")
    return config


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
    config["num_parameters"] = sum(p.numel() for p in model.parameters())
    config["versions"] = package_versions()
    config["git_commit"] = git_commit()
    return validate_config(config, CONFIG_NAME)


def save_pretrained(model, out_dir: str | Path, *, model_id: str | None = None, force: bool = False, **meta) -> Path:
    """Write ``model.safetensors``, ``config.json`` and ``README.md`` to ``out_dir``.

    ``meta`` sets metadata (``chunk_seconds, task, label_names, dataset, split, synthetic,
    metrics``) over what the model carries; ``model_id`` is the name the card's usage
    examples load it by (a Hub id; default: the folder path).

    A folder that already holds anything is refused unless ``force``; then only the three
    files are replaced, each atomically (written to a temporary file in the folder, then
    renamed over the old one), and every other file is left alone. Files get the user's
    usual permissions (``0o666`` less the umask).
    """
    out = Path(out_dir)
    config = make_config(model, **meta)
    if out.exists() and not out.is_dir():
        raise HubError(f"{out} is a file, not a folder to publish into")
    present = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if present and not force:
        shown = ", ".join(present[:5]) + (", ..." if len(present) > 5 else "")
        raise HubError(f"{out} is not empty ({shown}); publish into a new folder, or pass --force (force=True) to "
                       f"replace its {', '.join(PUBLISHED_FILES)} and leave everything else in it alone")
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    writers = {
        WEIGHTS_NAME: lambda path: save_file(state, path, metadata={"format": "pt"}),
        CONFIG_NAME: lambda path: path.write_text(json.dumps(config, indent=2) + "\n"),
        CARD_NAME: lambda path: path.write_text(model_card(config, model_id or str(out))),
    }
    _write_atomically(out, writers)
    return out


def _umask() -> int:
    """The process's umask (read without changing it where /proc allows)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _write_atomically(folder: Path, writers: dict) -> None:
    """Write every ``name: writer(path)`` to a temporary file in ``folder``, then rename each over ``name``.

    All files are complete before the first rename, so an error (a full disk) replaces
    nothing; the temporary files are removed whatever happens.
    """
    mode = 0o666 & ~_umask()
    tag = f"{os.getpid()}.{secrets.token_hex(4)}"
    temps = {name: folder / f".{name}.{tag}.tmp" for name in writers}
    try:
        for name, writer in writers.items():
            writer(temps[name])
            os.chmod(temps[name], mode)  # safetensors creates its file 0600
            with open(temps[name], "rb") as f:
                os.fsync(f.fileno())
        for name, temp in temps.items():
            os.replace(temp, folder / name)
    finally:
        for temp in temps.values():
            temp.unlink(missing_ok=True)


def push_to_hub(folder: str | Path, repo_id: str, *, private: bool | None = None) -> str:
    """Upload a published folder's three files to the Hub model repository ``repo_id`` (created if needed)."""
    folder = Path(folder)
    read_config(folder)  # refuse to upload something from_pretrained could not load
    api = HfApi()
    api.create_repo(repo_id, repo_type="model", exist_ok=True, private=private)
    api.upload_folder(repo_id=repo_id, folder_path=folder, repo_type="model", allow_patterns=PUBLISHED_FILES,
                      commit_message="Upload musiczoo model")
    return f"https://huggingface.co/{repo_id}"
