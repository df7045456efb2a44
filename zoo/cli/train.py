"""``fit | validate | test | predict --config`` through LightningCLI, and ``quickstart``.

YAML configs (see ``benchmarks/configs``) name a dataset and an architecture; the data
module's number of classes, task, label names, sample rate, chunk length and provenance are
linked into the model, so a config never names a value twice.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from importlib import resources
from pathlib import Path

from lightning.pytorch.callbacks import Callback
from lightning.pytorch.cli import LightningCLI

from datamodules.primitives.files import read_yaml

from .common import EXTRA_VERBS, CommandError

#: The splits each stage reads, as the run's first line counts them.
STAGE_SPLITS = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("predict",)}


class RunSummary(Callback):
    """Prints what will run (model, data, seed, where checkpoints go or which weights are used) once
    the data is set up: then a data root that is missing is still the only line printed, and the
    line can count the clips. ``ckpt_path`` is the coming run's ``--ckpt_path``."""

    def __init__(self, verb: str, seed, ckpt_path: str | None = None):
        self.verb, self.seed, self.ckpt_path = verb, seed, ckpt_path

    def setup(self, trainer, pl_module, stage: str) -> None:
        if not trainer.is_global_zero:
            return
        spec, data = pl_module.spec, trainer.datamodule
        p = data.provenance
        clips = ", ".join(f"{len(data.clips(s))} {s}" for s in STAGE_SPLITS[stage])
        seed = "no seed" if self.seed is False or self.seed is None else f"seed {self.seed}"
        outputs = (f"targets {', '.join(spec.label_names)}" if spec.task == "regression"
                   else f"{spec.num_classes} {'tags' if spec.task == 'multilabel' else 'classes'}")
        print(f"{self.verb}: {spec.architecture} on {spec.transform}, {outputs}, {seed}; "
              f"{p['dataset']} {p['split']} split{' (synthetic)' if p['synthetic'] else ''} at {data.sample_rate} Hz "
              f"from {data.root}: {clips} clips", flush=True)
        if stage == "fit":
            from ..resume import checkpoint_dir

            where = f"  checkpoints: {checkpoint_dir(trainer)}" if trainer.checkpoint_callbacks else "  checkpoints: none"
            print(where + (f"; resuming from {self.ckpt_path}" if self.ckpt_path else ""), flush=True)
        else:
            print(f"  weights: {self.ckpt_path or 'as initialised (no --ckpt_path)'}", flush=True)


class MusicZooCLI(LightningCLI):
    def parse_arguments(self, parser, args) -> None:
        """Read a ``--ckpt_path`` file (from the command line or a config) the way every verb
        does (:func:`~zoo.checkpoint.load_checkpoint_dict`: weights-only), before LightningCLI
        reads its hyperparameters: a hostile or damaged checkpoint is one line naming it rather
        than torch's traceback (its payload never runs either way)."""
        super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if ckpt_path and Path(ckpt_path).is_file():
            from ..checkpoint import load_checkpoint_dict

            load_checkpoint_dict(ckpt_path)

    def add_arguments_to_parser(self, parser):
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
        parser.link_arguments("data.task", "model.task", apply_on="instantiate")
        parser.link_arguments("data.label_names", "model.label_names", apply_on="instantiate")
        parser.link_arguments("data.target_scale", "model.target_scale", apply_on="instantiate")
        parser.link_arguments("data.provenance", "model.provenance", apply_on="instantiate")
        parser.link_arguments("data.init_args.sample_rate", "model.sample_rate", apply_on="parse")
        parser.link_arguments("data.init_args.chunk_seconds", "model.chunk_seconds", apply_on="parse")

    def before_fit(self):
        """``--ckpt_path last`` (or a file) must exist and match the model, or the run stops here
        with one line instead of starting from scratch or failing in ``load_state_dict``."""
        from ..resume import check_resume

        config = self.config_init[self.subcommand]
        config["ckpt_path"] = check_resume(config.get("ckpt_path"), self.trainer, self.model.spec)
        self._announce()

    def before_validate(self):
        self._announce()

    def before_test(self):
        self._announce()

    def before_predict(self):
        self._announce()

    def _announce(self):
        config = self.config_init[self.subcommand]
        seed = self.config[self.subcommand].get("seed_everything")
        self.trainer.callbacks.append(RunSummary(f"musiczoo {self.subcommand}", seed, config.get("ckpt_path")))

    def after_fit(self):
        """The fit's result: its best checkpoint and score (``musiczoo test --ckpt_path`` takes it)."""
        best = self.trainer.checkpoint_callback
        if self.trainer.is_global_zero and best is not None and best.best_model_path:
            score = f" ({best.monitor} {best.best_model_score:.3f})" if best.best_model_score is not None else ""
            print(f"best checkpoint: {best.best_model_path}{score}", flush=True)


def config_path(name: str) -> Path:
    """A config shipped with the package (``benchmarks/configs/<name>``)."""
    path = Path(str(resources.files("benchmarks") / "configs" / name))
    if not path.is_file():
        raise FileNotFoundError(f"no shipped config {name!r} in {path.parent}")
    return path


def build_cli(args: list[str], run: bool = True) -> MusicZooCLI:
    from datamodules.base import AudioDataModule

    from ..task import MusicTask

    return MusicZooCLI(
        MusicTask,
        AudioDataModule,
        subclass_mode_data=True,
        args=args,
        run=run,
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"epilog": EXTRA_VERBS, "formatter_class": argparse.RawDescriptionHelpFormatter},
    )


def run_lightning_cli(argv: list[str]) -> None:
    """LightningCLI's verbs (fit, validate, test, predict --config), once the config files are known to be readable."""
    check_config_files(argv)
    build_cli(argv)


def check_config_files(argv: list[str]) -> None:
    """Read every ``--config`` file first, so a missing file or a YAML syntax error is one line
    that names the file (the parser would report a line and column of an unnamed string)."""
    paths = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a in ("--config", "-c")]
    paths += [a.split("=", 1)[1] for a in argv if a.startswith("--config=")]
    for path in paths:
        try:
            read_yaml(path, missing=f"config file {path} does not exist")
        except ValueError as e:
            raise CommandError(argv[0], str(e)) from None


def cmd_quickstart(argv: list[str]) -> None:
    """Synthetic GTZAN (fault-filtered split) -> resnet_gru on mel on the CPU -> test."""
    parser = argparse.ArgumentParser(prog="musiczoo quickstart", description=cmd_quickstart.__doc__)
    parser.add_argument("--out", type=Path, default=Path("runs/quickstart"))
    parser.add_argument("--seconds", type=float, default=4.0, help="length of each synthetic clip")
    parser.add_argument("--max-epochs", type=int, default=None, help="override the config's epochs")
    args = parser.parse_args(argv)

    from datamodules.synthetic import make_synthetic_gtzan

    started = time.perf_counter()
    data_root = args.out / "synthetic_gtzan"
    if not (data_root / "genres_original").is_dir():
        print(f"writing synthetic GTZAN ({args.seconds:g} s clips) to {data_root} ...", flush=True)
        # One process per core: synthesis is the first run's largest cost after training.
        make_synthetic_gtzan(data_root, seconds=args.seconds, workers=os.cpu_count() or 1)
        print(f"  written in {time.perf_counter() - started:.0f} s", flush=True)
    synthesized = time.perf_counter()
    cli_args = [
        "--config", str(config_path("quickstart.yaml")),
        f"--data.init_args.root={data_root}",
        f"--data.init_args.cache_dir={args.out / 'cache'}",
        f"--trainer.default_root_dir={args.out}",
    ]
    if args.max_epochs is not None:
        cli_args.append(f"--trainer.max_epochs={args.max_epochs}")
    cli = build_cli(cli_args, run=False)
    every = cli.trainer.check_val_every_n_epoch
    if every and cli.trainer.max_epochs % every:
        # The config validates every few epochs, ending on its last; another length validates every
        # epoch, so that its last epoch is validated too and can be the best checkpoint.
        cli.trainer.check_val_every_n_epoch = 1
    summary = RunSummary("musiczoo quickstart", cli.config.get("seed_everything"))
    cli.trainer.callbacks.append(summary)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    trained = time.perf_counter()
    best = cli.trainer.checkpoint_callback.best_model_path
    summary.ckpt_path = best
    # The checkpoint this run just wrote: tensors and plain data, so loaded weights-only.
    (results,) = cli.trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path=best, weights_only=True)
    tested = time.perf_counter()
    # Next to the checkpoint, where `musiczoo publish` looks for the model card's results.
    (Path(best).parent / "metrics.json").write_text(json.dumps(results, indent=2))
    print(
        f"\nquickstart: resnet_gru on mel, synthetic GTZAN, fault-filtered test split "
        f"({len(cli.datamodule.clips('test'))} clips)\n"
        f"  test accuracy : {results['test/acc']:.3f}  (chance 0.100)\n"
        f"  macro F1      : {results['test/f1_macro']:.3f}\n"
        f"  checkpoint    : {best}\n"
        f"  wall time     : {tested - started:.0f} s (data {synthesized - started:.0f} s, "
        f"training {trained - synthesized:.0f} s for {cli.trainer.current_epoch} epochs, test {tested - trained:.0f} s)"
    )

