"""The ``musiczoo`` command.

``fit | validate | test | predict`` go through LightningCLI with YAML configs (see
``benchmarks/configs``); the data module's number of classes, task type, label names,
sample rate, chunk length and provenance are linked into the model, so a config names a
dataset and an architecture and nothing twice. The extra verbs (``models``, ``synth``,
``quickstart``, ``publish``, ``predict MODEL FILES``) are plain argparse. This is the only
module that turns errors into exit statuses.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import traceback
import warnings
from importlib import resources
from pathlib import Path

import yaml
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.utilities.exceptions import MisconfigurationException, SIGTERMException


EXTRA_VERBS = """extra commands:
  musiczoo models [PATTERN] [--pretrained]   list the model zoo (parameter counts) or published weights
  musiczoo synth gtzan|mtat OUT              write a synthetic dataset in the real on-disk layout
  musiczoo quickstart [--out DIR]            synthetic GTZAN -> train resnet_gru on mel (CPU) -> test
  musiczoo publish CKPT OUT_DIR              checkpoint -> model.safetensors + config.json + model card
  musiczoo predict MODEL AUDIO_OR_DIR ...    genres/tags of your own audio files
  musiczoo index MODEL [MODEL ...] MUSIC_DIR --out LIBRARY     embed a music folder for recommendation
  musiczoo recommend LIBRARY --track ID | --audio FILE | --like ID ID ... | --duplicates
  musiczoo recommend-eval LIBRARY [LIBRARY ...] --dataset gtzan|mtat  score recommendations vs baselines
  musiczoo serve LIBRARY [--port 8765]       the listening room: a local web page (pip install -e '.[web]')
  musiczoo download gtzan|mtat --root DIR    download, check and unpack a real dataset, then verify it
  musiczoo verify gtzan|mtat --root DIR      is a copy complete and usable? (counts, every file decoded)
  musiczoo bench GRID.yaml [--slurm SCRIPT]  every dataset x architecture x transform x seed, resumable
  musiczoo leaderboard RESULTS... --out leaderboard.md   mean +- std matrices, transform comparison, heatmaps
  (`musiczoo predict --config ...` is LightningCLI's predict over a data module)"""


#: Exit status of a command that stopped on an error (argparse uses it for bad arguments too).
ERROR_STATUS = 2
#: Set to 1 to see the traceback behind a one-line error (also ``--verbose`` on any verb).
VERBOSE_ENV = "MUSICZOO_VERBOSE"


class CommandError(SystemExit):
    """An error already worded for the user: ``musiczoo <verb>: error: <message>``.

    A ``SystemExit``, so a verb called from Python ends like a command (the message on
    stderr); ``main`` prints it as one line with exit status 2.
    """

    def __init__(self, verb: str, message: str):
        super().__init__(f"musiczoo {verb}: error: {message}")

    def __str__(self) -> str:
        return str(self.code)


def fail(verb: str, message: str):
    raise CommandError(verb, message)


class MusicZooCLI(LightningCLI):
    def add_arguments_to_parser(self, parser):
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
        parser.link_arguments("data.task", "model.task", apply_on="instantiate")
        parser.link_arguments("data.label_names", "model.label_names", apply_on="instantiate")
        parser.link_arguments("data.provenance", "model.provenance", apply_on="instantiate")
        parser.link_arguments("data.init_args.sample_rate", "model.sample_rate", apply_on="parse")
        parser.link_arguments("data.init_args.chunk_seconds", "model.chunk_seconds", apply_on="parse")

    def before_fit(self):
        """``--ckpt_path last`` (or a file) must exist and match the model, or the run stops here
        with one line instead of starting from scratch or failing in ``load_state_dict``."""
        from .resume import check_resume

        config = self.config_init[self.subcommand]
        config["ckpt_path"] = check_resume(config.get("ckpt_path"), self.trainer, self.model.hparams)


def config_path(name: str) -> Path:
    """A config shipped with the package (``benchmarks/configs/<name>``)."""
    path = Path(str(resources.files("benchmarks") / "configs" / name))
    if not path.is_file():
        raise FileNotFoundError(f"no shipped config {name!r} in {path.parent}")
    return path


def build_cli(args: list[str], run: bool = True) -> MusicZooCLI:
    from datamodules.base import AudioDataModule

    from .task import MusicTask

    return MusicZooCLI(
        MusicTask,
        AudioDataModule,
        subclass_mode_data=True,
        args=args,
        run=run,
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"epilog": EXTRA_VERBS, "formatter_class": argparse.RawDescriptionHelpFormatter},
    )


# ---- extra verbs ---------------------------------------------------------------------
def cmd_models(argv: list[str]) -> None:
    from .factory import create_model, describe_model, list_models

    parser = argparse.ArgumentParser(prog="musiczoo models", description="List the model zoo.")
    parser.add_argument("pattern", nargs="?", default="*", help="glob filter, e.g. 'resnet_*'")
    parser.add_argument("--num-classes", type=int, default=10)
    parser.add_argument("--pretrained", action="store_true", help="list published weights (arch.tag) instead")
    args = parser.parse_args(argv)
    if args.pretrained:
        from .pretrained import PRETRAINED, list_pretrained

        names = list_pretrained(args.pattern)
        for name in names:
            entry = PRETRAINED[name]
            print(f"{name:32s} {entry.source}  ({entry.dataset}, {entry.split}, {entry.transform} @ {entry.sample_rate} Hz)")
        if not names:
            print("no published weights registered yet (zoo.register_pretrained adds your own)")
        return
    print(f"{'model':22s} {'mel':>10s} {'mfcc':>10s} {'stft':>10s}   description")
    for name in list_models(args.pattern):
        counts = []
        for transform in ("mel", "mfcc", "stft"):
            model = create_model(name, transform=transform, num_classes=args.num_classes)
            counts.append(f"{sum(p.numel() for p in model.parameters()) / 1e6:9.2f}M")
        print(f"{name:22s} {' '.join(counts)}   {describe_model(name)}")
    print("timm/<name>: any timm CNN as a one-channel spectrogram model, e.g. timm/resnet18, timm/efficientnet_b0")


def cmd_synth(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="musiczoo synth", description="Write a synthetic dataset in a real on-disk layout.")
    sub = parser.add_subparsers(dest="dataset", required=True)
    gtzan = sub.add_parser("gtzan", help="GTZAN layout: <layout>/<genre>/<genre>.000NN.wav|au")
    gtzan.add_argument("out", type=Path)
    gtzan.add_argument("--seed", type=int, default=0)
    gtzan.add_argument("--seconds", type=float, default=30.0)
    gtzan.add_argument("--sample-rate", type=int, default=22050)
    gtzan.add_argument("--clips-per-genre", type=int, default=100)
    gtzan.add_argument("--layout", choices=["genres_original", "genres"], default="genres_original")
    gtzan.add_argument("--format", dest="fmt", choices=["wav", "au"], default=None,
                       help="default: the layout's own (wav for genres_original, au for genres)")
    mtat = sub.add_parser("mtat", help="MagnaTagATune layout: 0..f/<clip>.mp3 + annotations_final.csv")
    mtat.add_argument("out", type=Path)
    mtat.add_argument("--seed", type=int, default=0)
    mtat.add_argument("--n-clips", type=int, default=200)
    mtat.add_argument("--seconds", type=float, default=29.1)
    mtat.add_argument("--sample-rate", type=int, default=16000)
    mtat.add_argument("--n-broken", type=int, default=3, help="empty or truncated mp3 files, as on the real release")
    args = parser.parse_args(argv)
    if args.dataset == "mtat":
        from datamodules.synthetic_mtat import make_synthetic_mtat

        root = make_synthetic_mtat(args.out, seed=args.seed, n_clips=args.n_clips, seconds=args.seconds,
                                   sample_rate=args.sample_rate, n_broken=args.n_broken)
        print(f"synthetic MagnaTagATune written to {root}")
    if args.dataset == "gtzan":
        from datamodules.synthetic import make_synthetic_gtzan

        root = make_synthetic_gtzan(
            args.out, seed=args.seed, seconds=args.seconds, sample_rate=args.sample_rate,
            layout=args.layout, clips_per_genre=args.clips_per_genre, fmt=args.fmt,
        )
        print(f"synthetic GTZAN written to {root}")


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
        make_synthetic_gtzan(data_root, seconds=args.seconds)
        print(f"  written in {time.perf_counter() - started:.0f} s", flush=True)
    cli_args = [
        "--config", str(config_path("quickstart.yaml")),
        f"--data.init_args.root={data_root}",
        f"--data.init_args.cache_dir={args.out / 'cache'}",
        f"--trainer.default_root_dir={args.out}",
    ]
    if args.max_epochs is not None:
        cli_args.append(f"--trainer.max_epochs={args.max_epochs}")
    cli = build_cli(cli_args, run=False)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    best = cli.trainer.checkpoint_callback.best_model_path
    (results,) = cli.trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path="best")
    # Next to the checkpoint, where `musiczoo publish` looks for the model card's results.
    (Path(best).parent / "metrics.json").write_text(json.dumps(results, indent=2))
    print(
        f"\nquickstart: resnet_gru on mel, synthetic GTZAN, fault-filtered test split "
        f"({len(cli.datamodule.clips('test'))} clips)\n"
        f"  test accuracy : {results['test/acc']:.3f}  (chance 0.100)\n"
        f"  macro F1      : {results['test/f1_macro']:.3f}\n"
        f"  checkpoint    : {best}\n"
        f"  wall time     : {time.perf_counter() - started:.0f} s"
    )


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
    parser.add_argument("--force", action="store_true", help="publish into a folder that is not empty: replace its "
                        "model.safetensors, config.json and README.md (each atomically), leave every other file alone")
    args = parser.parse_args(argv)
    from .checkpoint import publish

    meta = {k: v for k, v in (("dataset", args.dataset), ("split", args.split), ("chunk_seconds", args.chunk_seconds))
            if v is not None}  # --chunk-seconds 0 is checked (and refused), not dropped
    if args.synthetic:
        meta["synthetic"] = True
    try:
        metrics = json.loads(args.metrics.read_text()) if args.metrics else None
        out = publish(args.ckpt, args.out_dir, args.push_to_hub, metrics=metrics, force=args.force, **meta)
    except (ValueError, OSError) as e:  # HubError, UnknownNameError and bad JSON are ValueErrors
        fail("publish", f"{e}")
    print(f"published to {out}" + (f" and https://huggingface.co/{args.push_to_hub}" if args.push_to_hub else ""))


def load_model(spec: str):
    """A Lightning ``.ckpt`` (weights-only), else a published folder, Hub id or ``arch.tag`` name.

    A string that names no local folder is a Hub id only when unambiguous (``hf://owner/name``,
    or ``owner/name`` where ``owner`` is not a local folder; see ``zoo.hub.hub_id_of``): a
    mistyped local path is an error with the close local names, never a download. A fetch
    from the Hub is announced on stderr.
    """
    if spec.endswith(".ckpt"):
        from .checkpoint import load_checkpoint

        return load_checkpoint(spec)
    from .factory import from_pretrained
    from .hub import hub_id_of, is_hub_id
    from .pretrained import PRETRAINED

    if not Path(spec).is_dir():
        if spec in PRETRAINED:  # a registered Hub id is unambiguous
            source = PRETRAINED[spec].source
            repo_id = source if is_hub_id(source) and not Path(source).is_dir() else None
        else:
            repo_id = hub_id_of(spec)
        if repo_id:
            print(f"musiczoo: fetching {repo_id} from the Hugging Face Hub"
                  + (f" (pretrained {spec})" if spec in PRETRAINED else ""), file=sys.stderr, flush=True)
    return from_pretrained(spec)


def cmd_predict(argv: list[str]) -> None:
    """``musiczoo predict MODEL AUDIO_OR_DIR ...``; exits with status 1 if any file could not be read."""
    from .audio import expand_audio_paths
    from .predict import WRITERS, predict_files

    parser = argparse.ArgumentParser(prog="musiczoo predict", description=(
        "Predict genres or tags of audio files (folders are searched recursively). Each file is cut into "
        "the model's chunk length and the chunk probabilities are averaged."))
    parser.add_argument("model", help="published folder, Hugging Face Hub id (owner/name), pretrained name "
                                      "(arch.tag) or a Lightning .ckpt")
    parser.add_argument("audio", nargs="+", help="audio files or folders")
    parser.add_argument("--top-k", type=int, default=5, help="labels per file (0: all; default 5)")
    parser.add_argument("--format", choices=sorted(WRITERS), default="table")
    parser.add_argument("--segments", action="store_true", help="also print each chunk's prediction")
    parser.add_argument("--batch-size", type=int, default=16, help="chunks per forward pass")
    parser.add_argument("--device", help="e.g. cpu, cuda, cuda:1 (default: cuda if available)")
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error("--batch-size must be at least 1")
    try:
        model = load_model(args.model)
    except (ValueError, OSError) as e:  # HubError and UnknownNameError are ValueErrors
        fail("predict", f"{e}")
    files = expand_audio_paths(args.audio)
    if not files:
        fail("predict", f"no audio files in {', '.join(args.audio)}")
    failures = []

    def tracked():
        for r in predict_files(model, files, top_k=args.top_k, segments=args.segments,
                               batch_size=args.batch_size, device=args.device):
            if r.error:
                failures.append(r.path)
            yield r

    WRITERS[args.format](tracked(), sys.stdout)
    sys.stdout.flush()
    if failures:
        print(f"musiczoo predict: {len(failures)} of {len(files)} files could not be read: "
              f"{', '.join(failures[:5])}{', ...' if len(failures) > 5 else ''}", file=sys.stderr)
        sys.exit(1)


def cmd_index(argv: list[str]) -> None:
    """``musiczoo index MODEL [MODEL ...] MUSIC_DIR --out LIBRARY``: create or update a library."""
    from .recommend.library import DEFAULT_MAX_CHUNKS, Library

    parser = argparse.ArgumentParser(prog="musiczoo index", description=(
        "Embed every audio file of MUSIC_DIR with one or more models (published folders, Hub ids, arch.tag "
        "names or .ckpt files) into a recommendation library. Re-running embeds only new or changed files "
        "and drops deleted ones."))
    parser.add_argument("models_and_music_dir", nargs="+", metavar="MODEL [MODEL ...] MUSIC_DIR")
    parser.add_argument("--out", required=True, type=Path, help="the library folder")
    parser.add_argument("--max-chunks", type=int, default=DEFAULT_MAX_CHUNKS,
                        help=f"evenly spaced chunks per track and model (default {DEFAULT_MAX_CHUNKS})")
    parser.add_argument("--weights", type=lambda s: [float(w) for w in s.split(",")],
                        help="one weight per model for the combined features, e.g. 1,0.5 (default: equal)")
    parser.add_argument("--batch-size", type=int, default=16, help="chunks per forward pass")
    parser.add_argument("--device", help="e.g. cpu, cuda (default: cuda if available)")
    args = parser.parse_args(argv)
    if len(args.models_and_music_dir) < 2:
        parser.error("give at least one MODEL and the MUSIC_DIR")
    *specs, music_dir = args.models_and_music_dir
    try:
        models = [load_model(spec) for spec in specs]
        library = Library.build(models, music_dir, args.out, max_chunks=args.max_chunks, weights=args.weights,
                                batch_size=args.batch_size, device=args.device)
    except (ValueError, OSError) as e:  # LibraryError, HubError, UnknownNameError are ValueErrors
        fail("index", f"{e}")
    run = library.manifest["last_run"]
    print(f"{args.out}: {len(library.tracks)} tracks ({run['embedded']} embedded, {run['unchanged']} unchanged, "
          f"{run['dropped']} dropped, {run['skipped']} unreadable skipped)")


def cmd_recommend(argv: list[str]) -> None:
    """``musiczoo recommend LIBRARY (--track ID | --audio FILE | --like ID ... | --duplicates)``."""
    from .recommend.library import FEATURES, Library
    from .recommend.output import WRITERS, write_duplicates

    parser = argparse.ArgumentParser(prog="musiczoo recommend", description=(
        "Tracks of a library like a track of it, like an audio file from outside it, or like a set of "
        "liked tracks (cosine similarity of the models' vectors); or its near-duplicate pairs."))
    parser.add_argument("library", type=Path)
    query = parser.add_mutually_exclusive_group(required=True)
    query.add_argument("--track", help="a track id (path relative to the music folder), a path to it, or a row number")
    query.add_argument("--audio", type=Path, help="any audio file (not added to the library)")
    query.add_argument("--like", nargs="+", metavar="ID", help="liked tracks: recommend for their mean profile")
    query.add_argument("--duplicates", action="store_true", help="list near-identical pairs")
    parser.add_argument("-k", type=int, default=10, help="how many tracks (default 10)")
    parser.add_argument("--features", choices=FEATURES, default="combined",
                        help="embedding, probabilities (genres/tags) or both (default)")
    parser.add_argument("--diversify", type=float, metavar="LAMBDA",
                        help="maximal marginal relevance: 1 = plain ranking, lower = more varied (e.g. 0.7)")
    parser.add_argument("--threshold", type=float, default=0.98, help="--duplicates: minimum similarity")
    parser.add_argument("--format", choices=sorted(WRITERS), default="table")
    args = parser.parse_args(argv)
    try:
        library = Library.open(args.library)
        options = {"k": args.k, "feature": args.features, "diversify": args.diversify}
        if args.duplicates:
            write_duplicates(library.duplicates(args.threshold), args.format, sys.stdout)
            return
        if args.track:
            query, matches = library.track(args.track).id, library.similar(args.track, **options)
        elif args.like:
            query, matches = " + ".join(library.track(t).id for t in args.like), library.like(args.like, **options)
        else:
            labels, matches = library.similar_to_audio(args.audio, **options)
            query = f"{args.audio} ({', '.join(f'{n} {p:.2f}' for n, p in list(labels.items())[:3])})"
    except (ValueError, OSError) as e:
        fail("recommend", f"{e}")
    WRITERS[args.format](query, matches, sys.stdout)


def cmd_recommend_eval(argv: list[str]) -> None:
    """``musiczoo recommend-eval LIBRARY [LIBRARY ...] --dataset gtzan|mtat``."""
    from .recommend.benchmark import evaluate_libraries, render_table

    parser = argparse.ArgumentParser(prog="musiczoo recommend-eval", description=(
        "Score recommendations of libraries indexed from a labelled collection (GTZAN or MagnaTagATune layout) "
        "for every feature choice, against a random and an MFCC mean+std baseline."))
    parser.add_argument("libraries", nargs="+", type=Path)
    parser.add_argument("--dataset", choices=["gtzan", "mtat"], required=True)
    parser.add_argument("--split", default="test", help="GTZAN fault-filtered / MTAT top-50 split (default test)")
    parser.add_argument("-k", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0, help="of the random baseline")
    parser.add_argument("--results", type=Path, help="append the rows to this JSON-lines file")
    args = parser.parse_args(argv)
    try:
        rows = evaluate_libraries(args.libraries, args.dataset, split=args.split, k=args.k, seed=args.seed)
    except (ValueError, OSError) as e:
        fail("recommend-eval", f"{e}")
    if args.results:
        args.results.parent.mkdir(parents=True, exist_ok=True)
        with open(args.results, "a") as f:
            f.writelines(json.dumps(row) + "\n" for row in rows)
    print(render_table(rows))


def cmd_serve(argv: list[str]) -> None:
    """``musiczoo serve LIBRARY [--host 127.0.0.1] [--port 8765]``."""
    parser = argparse.ArgumentParser(prog="musiczoo serve", description=(
        "The listening room: a local web page to browse a library, hear its tracks, see what the models "
        "think of them and hear the tracks they were matched with. Needs the web extra."))
    parser.add_argument("library", type=Path)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args(argv)
    try:
        from .web.app import serve
    except ImportError as e:
        fail("serve", f"the web extra is not installed ({e}); pip install -e '.[web]'")
    try:
        serve(args.library, host=args.host, port=args.port)
    except (ValueError, OSError) as e:
        fail("serve", f"{e}")


def cmd_download(argv: list[str]) -> None:
    """``musiczoo download gtzan|mtat --root DIR``: fetch (resumable, checked), unpack, verify."""
    from datamodules.download import RELEASES, DownloadError, download

    parser = argparse.ArgumentParser(prog="musiczoo download", description=(
        "Download a dataset from its known sources (tried in order; interrupted downloads resume), check sizes "
        "and checksums, unpack it into the layout the data modules read, then verify it."))
    parser.add_argument("dataset", choices=sorted(RELEASES))
    parser.add_argument("--root", type=Path, required=True, help="where the dataset goes")
    parser.add_argument("--delete-archives", action="store_true", help="remove the archives after unpacking")
    parser.add_argument("--workers", type=int, help="decoding processes for the verification")
    args = parser.parse_args(argv)
    try:
        reports = download(args.dataset, args.root, keep_archives=not args.delete_archives)
    except (DownloadError, OSError) as e:
        fail("download", f"{e}")
    for report in reports:
        for attempt in report.attempts:
            print(f"{report.name}: {attempt.source}: {attempt.outcome}")
    cmd_verify([args.dataset, "--root", str(args.root)] + (["--workers", str(args.workers)] if args.workers else []))


def cmd_verify(argv: list[str]) -> None:
    """``musiczoo verify gtzan|mtat --root DIR``; exit status 1 when the data modules could not run on it."""
    from datamodules.verify import verify

    parser = argparse.ArgumentParser(prog="musiczoo verify", description=(
        "Check a copy of GTZAN or MagnaTagATune: file counts per folder against the release, every file "
        "decoded, the release's known faulty files named as such."))
    parser.add_argument("dataset", choices=["gtzan", "mtat"])
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--workers", type=int, help="decoding processes (default min(4, CPUs))")
    args = parser.parse_args(argv)
    try:
        report = verify(args.dataset, args.root, workers=args.workers)
    except (ValueError, OSError) as e:
        fail("verify", f"{e}")
    print(report.summary())
    if not report.usable:
        sys.exit(1)


def cmd_bench(argv: list[str]) -> None:
    """``musiczoo bench GRID.yaml``: see ``benchmarks/grid.py``."""
    from benchmarks.grid import main as bench

    bench(argv)


def cmd_leaderboard(argv: list[str]) -> None:
    """``musiczoo leaderboard RESULTS... --out leaderboard.md``: see ``benchmarks/leaderboard.py``."""
    from benchmarks.leaderboard import main as leaderboard

    leaderboard(argv)


EXTRA = {"models": cmd_models, "synth": cmd_synth, "quickstart": cmd_quickstart, "publish": cmd_publish,
         "index": cmd_index, "recommend": cmd_recommend, "recommend-eval": cmd_recommend_eval, "serve": cmd_serve,
         "download": cmd_download, "verify": cmd_verify,
         "bench": cmd_bench, "leaderboard": cmd_leaderboard}


def is_file_predict(argv: list[str]) -> bool:
    """``musiczoo predict MODEL FILES...`` (positional) rather than LightningCLI's ``predict --config``."""
    return len(argv) > 1 and argv[0] == "predict" and not argv[1].startswith("-")


def check_config_files(argv: list[str]) -> None:
    """Read every ``--config`` file first, so a missing file or a YAML syntax error is one line
    that names the file (the parser would report a line and column of an unnamed string)."""
    paths = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a in ("--config", "-c")]
    paths += [a.split("=", 1)[1] for a in argv if a.startswith("--config=")]
    for path in paths:
        try:
            yaml.safe_load(Path(path).read_text())
        except FileNotFoundError:
            raise CommandError(argv[0], f"config file {path} does not exist") from None
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise CommandError(argv[0], f"{path}: invalid YAML{where}: {getattr(e, 'problem', None) or e}") from None


def _quiet_optional_dependency_notes() -> None:
    """Without TensorBoard installed, Lightning warns on every run that it logs to CSV instead;
    that is the documented default here (``lightning_logs/version_N/metrics.csv``), not a problem."""
    warnings.filterwarnings("ignore", message=r".*`tensorboardX` has been removed as a dependency.*")


def _informational_logs_to_stdout() -> None:
    """Lightning's progress notes ("Seed set to 0", "GPU available: ...") are not errors; on stdout
    they leave stderr to warnings and errors, so an error is the one line there."""
    for name in ("lightning.pytorch", "lightning.fabric"):
        for handler in logging.getLogger(name).handlers:
            if isinstance(handler, logging.StreamHandler) and handler.stream is sys.stderr:
                handler.setStream(sys.stdout)


def _root_cause(error: BaseException) -> BaseException:
    """The error the user can act on: jsonargparse wraps a data module's own ValueError in its own."""
    while error.__cause__ is not None:
        error = error.__cause__
    return error


def main(argv: list[str] | None = None) -> None:
    """Run a verb. The toolkit's own errors (bad names, values, data roots, config files, caches,
    models, libraries) end as one line ``musiczoo <verb>: error: ...`` with exit status 2;
    ``--verbose`` or ``MUSICZOO_VERBOSE=1`` shows the traceback too."""
    argv = sys.argv[1:] if argv is None else list(argv)
    verbose = "--verbose" in argv or os.environ.get(VERBOSE_ENV, "0") not in ("", "0")
    argv = [a for a in argv if a != "--verbose"]
    verb = argv[0] if argv and not argv[0].startswith("-") else ""
    program_args, sys.argv = sys.argv, sys.argv[:1]  # the arguments go to LightningCLI explicitly
    _quiet_optional_dependency_notes()
    try:
        if argv and argv[0] in EXTRA:
            EXTRA[argv[0]](argv[1:])
        elif is_file_predict(argv):
            cmd_predict(argv[1:])
        else:
            check_config_files(argv)
            _informational_logs_to_stdout()
            build_cli(argv)
    except SIGTERMException:  # Lightning stops on SIGTERM with SystemExit(None), i.e. "success"
        from .resume import PREEMPTED_STATUS

        print(f"musiczoo{' ' + verb if verb else ''}: stopped by SIGTERM after saving last.ckpt; "
              "run the same command with --ckpt_path last to resume", file=sys.stderr)
        sys.exit(PREEMPTED_STATUS)
    except CommandError as e:
        _exit(str(e), verbose)
    except (ValueError, OSError, yaml.YAMLError, MisconfigurationException) as e:  # toolkit and Lightning set-up errors
        cause = _root_cause(e)
        _exit(f"musiczoo{' ' + verb if verb else ''}: error: {str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__}", verbose)
    finally:
        sys.argv = program_args


def _exit(line: str, verbose: bool) -> None:
    if verbose:
        traceback.print_exc()
    print(line, file=sys.stderr)
    sys.exit(ERROR_STATUS)


if __name__ == "__main__":
    main()
