"""Reading a grid file: every key, type and name checked before anything trains.

A grid file names the datasets (a data config, a root, optional overrides and the ``musiczoo
synth`` arguments that write a synthetic one), the architectures (registry names or glob
patterns, ``timm/<name>`` included, or ``{name, init_from, freeze}`` entries), the transforms, the seeds and the trainer settings
(epochs, devices, precision, strategy, ...). :func:`load_grid` turns it into its cells, each
with the ``musiczoo fit``/``test`` arguments that train it and the hash of what decides its
result; a grid that cannot run is one :class:`GridError` line naming the file and the key
(the trainer's, model's and data's settings are checked against the classes they go to, so
a typo does not fail every cell in the parser). ``benchmarks/grid.py`` runs the cells.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from datamodules.primitives.files import read_yaml

#: What a grid file may hold at its top level and in each dataset entry.
GRID_KEYS = {"results", "out", "datasets", "architectures", "transforms", "seeds", "trainer", "overrides",
             "slurm", "wandb_project"}
DATASET_KEYS = {"config", "root", "overrides", "synth", "init_from", "freeze", "title"}
#: What an architecture entry may be besides a name or pattern: a mapping with these keys (``name`` required).
#: ``init_from``/``freeze`` (here or in a dataset entry) make the cells fine-tune from, or probe, a
#: trained model (``musiczoo fit --model.init_from/--model.freeze``, see ``zoo/transfer.py``).
ARCHITECTURE_KEYS = {"name", "init_from", "freeze"}
#: ``#SBATCH`` settings a grid's ``slurm:`` block may set, with their defaults.
SLURM_DEFAULTS = {"time": "04:00:00", "cpus_per_task": 8, "partition": None, "account": None,
                  "max_parallel": None, "gpus_per_node": None, "mem": None}


class GridError(ValueError):
    """A grid file that cannot run; raised before anything trains."""


@dataclass(frozen=True)
class Cell:
    """One dataset x architecture x transform x seed of a grid, with the CLI arguments that train it."""

    index: int
    dataset: str
    architecture: str
    transform: str
    seed: int
    args: tuple[str, ...]  # musiczoo fit/test arguments, output folder and logger excluded
    config_hash: str
    out: Path  # the grid's folder of runs
    synth: tuple[str, ...] = ()
    root: str = ""
    init_from: str | None = None
    freeze: str | None = None
    #: The leaderboard's title of the dataset entry's section (a subset of a dataset says which), if set.
    title: str | None = None

    @property
    def regime(self) -> str:
        """``scratch``, ``finetune`` (from ``init_from``) or ``probe`` (``init_from`` with a frozen encoder)."""
        return "scratch" if not self.init_from else "probe" if self.freeze else "finetune"

    @property
    def name(self) -> str:
        regime = "" if self.regime == "scratch" else f"-{self.regime}"
        return f"{self.dataset}/{self.architecture.replace('/', '-')}{regime}-{self.transform}-seed{self.seed}"

    @property
    def folder(self) -> Path:
        """This cell's runs; the config hash in the name keeps a changed cell from resuming a stale checkpoint."""
        return self.out / f"{self.name}-{self.config_hash[:8]}"

    @property
    def key(self) -> tuple:
        return (self.dataset, self.architecture, self.transform, self.seed, self.init_from, self.freeze)


@dataclass
class Grid:
    path: Path
    results: Path
    out: Path
    cells: list[Cell] = field(default_factory=list)
    slurm: dict = field(default_factory=dict)
    trainer: dict = field(default_factory=dict)
    wandb_project: str = "musiczoo-bench"


def cli_overrides(settings: dict, prefix: str = "") -> list[str]:
    """``{"trainer.max_epochs": 3, "model.transform_params": {...}}`` -> ``--trainer.max_epochs=3 ...``
    (mappings and lists as JSON, which the CLI parses as YAML)."""
    return [f"--{prefix}{key}={json.dumps(value) if isinstance(value, (dict, list)) else value}"
            for key, value in settings.items()]


def resolve_architectures(patterns: list[str]) -> list[str]:
    """Registry names and glob patterns (``"*"``, ``"resnet_*"``) plus ``timm/<name>``, in order, once each."""
    from zoo.factory import list_models
    from zoo.registry import TIMM_PREFIX

    registered = list_models()
    names: list[str] = []
    for pattern in patterns:
        if pattern.startswith(TIMM_PREFIX):
            import timm

            matches = [f"{TIMM_PREFIX}{n}" for n in timm.list_models(pattern[len(TIMM_PREFIX):])]
            if not matches:
                raise GridError(f"architecture {pattern!r}: no timm model matches (see timm.list_models())")
        else:
            matches = fnmatch.filter(registered, pattern)
            if not matches:
                raise GridError(f"architecture {pattern!r} matches no registered model; registered: "
                                f"{', '.join(registered)} (or timm/<name>)")
        names += [m for m in matches if m not in names]
    return list(dict.fromkeys(names))


def transfer_settings(where: str, entry: dict, inherited: tuple = (None, None)) -> tuple[str | None, str | None]:
    """An entry's ``(init_from, freeze)``, each falling back to ``inherited`` (the dataset's): a string
    source and ``encoder`` or null; a probe needs a source, and a ``.ckpt`` source must exist."""
    from zoo.factory import ModelSource
    from zoo.spec import FREEZE_CHOICES, ModelError

    init_from = entry.get("init_from", inherited[0])
    freeze = entry.get("freeze", inherited[1])
    if init_from is not None:
        expect(init_from, str, f"{where}.init_from", "a model (a published folder, .ckpt, arch.tag or Hub id)")
        try:
            source = ModelSource.parse(init_from)
        except ModelError as e:
            raise GridError(f"{where}.init_from: {e}") from None
        if source.kind == "checkpoint" and not Path(init_from).is_file():
            raise GridError(f"{where}.init_from: no such checkpoint {init_from}")
    if freeze is not None and freeze not in FREEZE_CHOICES:
        raise GridError(f"'{where}.freeze' must be one of {', '.join(FREEZE_CHOICES)} or null, not {freeze!r}")
    if freeze and not init_from:
        raise GridError(f"'{where}.freeze' needs an init_from (a probe trains a head on a trained encoder)")
    return init_from, freeze


def architecture_entries(patterns: list) -> list[tuple[str, dict]]:
    """Each architecture entry as ``(name or pattern, its settings)``; a mapping entry must have a
    ``name`` and only :data:`ARCHITECTURE_KEYS`."""
    entries = []
    for i, entry in enumerate(patterns):
        if isinstance(entry, dict):
            unknown = set(entry) - ARCHITECTURE_KEYS
            if unknown or "name" not in entry:
                raise GridError(f"architectures[{i}]: an entry is a name or a mapping with 'name' and optional "
                                f"'init_from', 'freeze'; got keys {sorted(map(str, entry))}")
            entries.append((str(expect(entry["name"], str, f"architectures[{i}].name", "a model name")), entry))
        else:
            entries.append((str(entry), {}))
    return entries


def check_data_config(name: str, config: Path) -> type:
    """The dataset's config must exist and name an importable ``AudioDataModule``; returns that class."""
    import importlib

    from datamodules.base import AudioDataModule

    if not config.is_file():
        raise GridError(f"dataset {name!r}: config {config} does not exist")
    settings = read_yaml(config, GridError) or {}
    data = settings.get("data") if isinstance(settings, dict) else None
    class_path = str((data if isinstance(data, dict) else {}).get("class_path", ""))
    module, _, cls = class_path.rpartition(".")
    try:
        data_class = getattr(importlib.import_module(module), cls)
    except (ImportError, AttributeError, ValueError):
        data_class = None
    if not (isinstance(data_class, type) and issubclass(data_class, AudioDataModule)):
        known = ", ".join(f"datamodules.{m}" for m in ("gtzan.GTZANDataModule", "mtat.MTATDataModule",
                                                        "folder.FolderDataModule", "hf.HFDataModule"))
        raise GridError(f"dataset {name!r}: {config} names data class {class_path!r}, which is not a data module "
                        f"of this toolkit; known: {known}")
    return data_class


def argument_names(cls: type) -> list[str]:
    """The keyword arguments ``cls(...)`` takes, following ``**kwargs`` to the base classes as
    jsonargparse does."""
    import inspect

    names: list[str] = []
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        parameters = list(inspect.signature(klass.__init__).parameters.values())[1:]
        names += [p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        if not any(p.kind is p.VAR_KEYWORD for p in parameters):
            break
    return list(dict.fromkeys(names))


def check_arguments(where: str, settings: dict, data_class: type) -> None:
    """Each ``trainer.``, ``model.`` and ``data.init_args.`` key of ``settings`` must be an argument
    of ``lightning.Trainer``, ``MusicTask`` or the dataset's data class: a typo is refused here,
    with the nearest name, instead of failing every cell with the parser's ``SystemExit: 2``."""
    import difflib

    from lightning.pytorch import Trainer

    from zoo.task import MusicTask

    targets = {"trainer.": (Trainer, "lightning.Trainer"), "model.": (MusicTask, "MusicTask"),
               "data.init_args.": (data_class, data_class.__name__)}
    for key in map(str, settings):
        for prefix, (cls, name) in targets.items():
            if not key.startswith(prefix):
                continue
            argument, names = key[len(prefix):].split(".")[0], argument_names(cls)
            if argument not in names:
                near = difflib.get_close_matches(argument, names, n=1)
                raise GridError(f"{where}{prefix}{argument} is not an argument of {name}"
                                + (f"; did you mean {near[0]!r}?" if near else ""))


def expect(value, kind: type | tuple, key: str, what: str):
    """``value`` (the grid's ``key``) if it is a ``kind``, else a one-line error saying what ``key``
    must be (YAML's ``true`` is no integer, though Python's ``bool`` is an ``int``)."""
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise GridError(f"{key!r} must be {what}, not {value!r}")
    return value


def config_hash(config: Path, args: list[str]) -> str:
    """Hash of what decides a cell's result: the config file's content and every argument."""
    digest = hashlib.sha256(config.read_bytes())
    digest.update(json.dumps(args).encode())
    return digest.hexdigest()[:16]


def load_grid(path: Path, results: Path | None = None, out: Path | None = None) -> Grid:
    """Read and check a grid file: every key, type and name, the trainer's, model's and data's
    settings included, before anything trains; an error is one line naming the file and the key."""
    try:
        return _load_grid(Path(path), results, out)
    except GridError as e:
        raise GridError(str(e) if str(e).startswith(f"{path}:") else f"{path}: {e}") from None


def _load_grid(path: Path, results: Path | None, out: Path | None) -> Grid:
    from zoo.frontends import list_transforms

    spec = read_yaml(path, GridError, missing=f"{path}: no such grid file")
    spec = {} if spec is None else spec
    if not isinstance(spec, dict):
        raise GridError(f"a grid is a mapping of keys (see benchmarks/grids/), not {spec!r}")
    unknown = set(spec) - GRID_KEYS
    if unknown:
        raise GridError(f"unknown keys {sorted(unknown)}; a grid has {sorted(GRID_KEYS)}")
    for key in ("datasets", "architectures", "transforms"):
        if not spec.get(key):
            raise GridError(f"'{key}' is missing or empty")
    datasets = expect(spec["datasets"], dict, "datasets", "a mapping of dataset names to {config, root, ...}")
    patterns = expect(spec["architectures"], list, "architectures", "a list of names or patterns")
    # (name, entry index, settings) per architecture, once each: a pattern's settings apply to each name it matches.
    architectures, seen = [], set()
    for i, (pattern, settings) in enumerate(architecture_entries(patterns)):
        for name in resolve_architectures([pattern]):
            if (name, settings.get("init_from"), settings.get("freeze")) not in seen:
                seen.add((name, settings.get("init_from"), settings.get("freeze")))
                architectures.append((name, i, settings))
    transforms = expect(spec["transforms"], (list, dict), "transforms", "a list of names or {name: transform_params}")
    transforms = {t: None for t in transforms} if isinstance(transforms, list) else dict(transforms)
    bad = [t for t in transforms if t not in list_transforms()]
    if bad:
        raise GridError(f"unknown transform(s) {bad}; valid: {', '.join(list_transforms())}")
    for transform, params in transforms.items():
        expect(params, (dict, type(None)), f"transforms.{transform}", "a mapping of front-end settings")
    seeds = [expect(s, int, "seeds", "a list of integers")
             for s in expect(spec.get("seeds", [0]), list, "seeds", "a list of integers")]
    for key in ("results", "out", "wandb_project"):
        expect(spec.get(key, ""), str, key, "a string")
    trainer = expect(spec.get("trainer") or {}, dict, "trainer", "a mapping of lightning.Trainer arguments")
    overrides = expect(spec.get("overrides") or {}, dict, "overrides", "a mapping of musiczoo fit arguments")
    grid = Grid(path=path, results=Path(results or spec.get("results", "benchmarks/results/results.jsonl")),
                out=Path(out or spec.get("out", "runs/bench")), trainer=dict(trainer),
                slurm={**SLURM_DEFAULTS, **expect(spec.get("slurm") or {}, dict, "slurm", "a mapping")},
                wandb_project=spec.get("wandb_project", "musiczoo-bench"))
    unknown = set(grid.slurm) - set(SLURM_DEFAULTS)
    if unknown:
        raise GridError(f"unknown slurm settings {sorted(unknown)}; known: {sorted(SLURM_DEFAULTS)}")
    trainer_settings = {f"trainer.{key}": value for key, value in trainer.items()}
    shared = cli_overrides(trainer_settings) + cli_overrides(overrides)
    for dataset, entry in datasets.items():
        entry = expect(entry or {}, dict, f"datasets.{dataset}", "a mapping with 'config' and 'root'")
        unknown = set(entry) - DATASET_KEYS
        if unknown:
            raise GridError(f"dataset {dataset!r}: unknown keys {sorted(unknown)}; known: {sorted(DATASET_KEYS)}")
        if "config" not in entry or "root" not in entry:
            raise GridError(f"dataset {dataset!r}: needs 'config' (a data config) and 'root' (its data folder)")
        for key in ("config", "root"):
            expect(entry[key], str, f"datasets.{dataset}.{key}", "a path")
        title = expect(entry.get("title"), (str, type(None)), f"datasets.{dataset}.title", "a string")
        dataset_overrides = expect(entry.get("overrides") or {}, dict, f"datasets.{dataset}.overrides", "a mapping")
        synth = expect(entry.get("synth") or [], list, f"datasets.{dataset}.synth", "a list of musiczoo synth arguments")
        dataset_transfer = transfer_settings(f"datasets.{dataset}", entry)
        config = Path(entry["config"])
        data_class = check_data_config(dataset, config)
        check_arguments("", {**trainer_settings, **overrides}, data_class)
        check_arguments(f"datasets.{dataset}.overrides.", dataset_overrides, data_class)
        data_args = [f"--data.init_args.root={entry['root']}", *cli_overrides(dataset_overrides)]
        for architecture, i, settings in architectures:
            init_from, freeze = transfer_settings(f"architectures[{i}]", settings, dataset_transfer)
            transfer = {"model.init_from": init_from, "model.freeze": freeze}
            for transform, params in transforms.items():
                for seed in seeds:
                    args = ["--config", str(config), *shared, *data_args, f"--model.architecture={architecture}",
                            f"--model.transform={transform}", f"--seed_everything={seed}"]
                    if params:
                        args += cli_overrides({"model.transform_params": params})
                    args += cli_overrides({k: v for k, v in transfer.items() if v is not None})
                    cell = Cell(len(grid.cells), dataset, architecture, transform, seed, tuple(args),
                                config_hash(config, args), grid.out, tuple(str(a) for a in synth),
                                str(entry["root"]), init_from, freeze, title)
                    if any(c.name == cell.name for c in grid.cells):
                        raise GridError(f"two cells are named {cell.name}: an architecture is listed twice with "
                                        "the same init_from regime")
                    grid.cells.append(cell)
    return grid
