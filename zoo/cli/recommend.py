"""``index``, ``recommend`` and ``serve``: a music library, its recommendations and the listening room."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import fail
from .models import RUNTIME_HELP, load_model


def index_parser() -> argparse.ArgumentParser:
    """``musiczoo index``'s arguments (the cluster scripts' test parses their command with it)."""
    from ..predict import RUNTIMES
    from ..recommend.library import DEFAULT_MAX_CHUNKS

    parser = argparse.ArgumentParser(prog="musiczoo index", description=(
        "Embed every audio file of MUSIC_DIR with one or more models (published folders, Hub ids, arch.tag "
        "names or .ckpt files; with --runtime onnx, exported files) into a recommendation library. Re-running embeds only new or changed files "
        "and drops deleted ones."))
    parser.add_argument("models_and_music_dir", nargs="+", metavar="MODEL [MODEL ...] MUSIC_DIR")
    parser.add_argument("--out", required=True, type=Path, help="the library folder")
    parser.add_argument("--max-chunks", type=int, default=DEFAULT_MAX_CHUNKS,
                        help=f"evenly spaced chunks per track and model (default {DEFAULT_MAX_CHUNKS})")
    parser.add_argument("--weights", type=lambda s: [float(w) for w in s.split(",")],
                        help="one weight per model for the combined features, e.g. 1,0.5 (default: equal)")
    parser.add_argument("--batch-size", type=int, default=16, help="chunks per forward pass")
    parser.add_argument("--device", help="e.g. cpu, cuda (default: cuda if available); one process only")
    parser.add_argument("--runtime", choices=RUNTIMES, default="torch", help=RUNTIME_HELP)
    ranks = parser.add_argument_group(
        "many processes", "as the Trainer's flags of `musiczoo fit`; any of them runs the index through Lightning "
        "Fabric's launchers (devices > 1 here, SLURM or torchrun detected), each process embedding a share of the "
        "files on its own device (default: one process, --device)")
    ranks.add_argument("--accelerator", help="cpu, gpu, cuda, mps or auto (default auto)")
    ranks.add_argument("--devices", help="processes per machine: a count, a list of GPUs or auto (default auto)")
    ranks.add_argument("--num-nodes", type=int, help="machines (default 1)")
    ranks.add_argument("--strategy", help="ddp for more than one process (default auto)")
    return parser


def cmd_index(argv: list[str]) -> None:
    """``musiczoo index MODEL [MODEL ...] MUSIC_DIR --out LIBRARY``: create or update a library."""
    from ..recommend.indexing import check_settings
    from ..recommend.library import Library

    parser = index_parser()
    args = parser.parse_args(argv)
    if len(args.models_and_music_dir) < 2:
        parser.error("give at least one MODEL and the MUSIC_DIR")
    *specs, music_dir = args.models_and_music_dir
    many = {"accelerator": args.accelerator, "devices": args.devices, "num_nodes": args.num_nodes,
            "strategy": args.strategy}
    try:
        check_settings(len(specs), args.max_chunks, args.weights)  # before any model is loaded or file embedded
        if args.batch_size < 1:
            raise ValueError(f"--batch-size must be at least 1, got {args.batch_size}")
        if not Path(music_dir).expanduser().is_dir():
            raise ValueError(f"{music_dir}: no such music folder")
        fabric = None
        if any(v is not None for v in many.values()):
            if args.device is not None:
                raise ValueError("--device is for one process; with --accelerator, --devices, --num-nodes or "
                                 "--strategy each process runs on the device Lightning gives it")
            fabric = _fabric(many)
        models = [load_model(spec, args.runtime) for spec in specs]
        options = {"max_chunks": args.max_chunks, "weights": args.weights, "batch_size": args.batch_size}
        if fabric is None:
            library = Library.build(models, music_dir, args.out, device=args.device, **options)
        else:
            library = _launch(fabric, argv, models, music_dir, args.out, options)
    except (ValueError, OSError, ImportError) as e:  # LibraryError, ModelError, UnknownNameError are ValueErrors;
        fail("index", f"{e}")                          # ImportError names the export extra (--runtime onnx)
    if library is None:
        return  # a rank other than 0: rank 0 wrote the library and reports it
    run = library.manifest["last_run"]
    print(f"{args.out}: {len(library.tracks)} tracks ({run['embedded']} embedded, {run['unchanged']} unchanged, "
          f"{run['dropped']} dropped, {run['skipped']} unreadable skipped)"
          + (f"; embedded by rank: {', '.join(map(str, run['embedded_by_rank']))}" if "embedded_by_rank" in run else ""))


def _fabric(flags: dict):
    """A Fabric for the flags given (the rest at the Trainer's defaults); Lightning's refusal of a
    bad value (a type, value or runtime error: no such GPU, strategy or count) as a ValueError."""
    from lightning.fabric import Fabric
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    given = {k: v for k, v in flags.items() if v is not None}
    try:
        return Fabric(**given)
    except (ValueError, TypeError, RuntimeError, MisconfigurationException) as e:
        named = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in given.items())
        raise ValueError(f"cannot run with {named}: {' '.join(str(e).split())}") from None


def _launch(fabric, argv: list[str], *args):
    """``fabric.launch`` of :func:`_index_on_rank` with ``args``. Lightning's local launcher starts
    the other processes by running this process's command line again, and ``main`` keeps only the
    program there while a verb runs: the index arguments go back for the launch."""
    program = sys.argv
    sys.argv = [program[0], "index", *argv]
    try:
        return fabric.launch(_index_on_rank, *args)
    finally:
        sys.argv = program


def _index_on_rank(fabric, models: list, music_dir: str, out: Path, options: dict):
    """One process's part of the index run (a module-level function: ``--strategy ddp_spawn`` pickles it)."""
    from ..recommend.library import Library

    return Library.build(models, music_dir, out, fabric=fabric, **options)


def cmd_recommend(argv: list[str]) -> None:
    """``musiczoo recommend LIBRARY (--track ID | --audio FILE | --like ID ... | --versions ID | --duplicates)``."""
    from ..recommend.library import DUPLICATE_THRESHOLD, FEATURES, Library
    from ..recommend.output import MATCH_WRITERS, write_duplicates

    parser = argparse.ArgumentParser(prog="musiczoo recommend", description=(
        "Tracks of a library like a track of it, like an audio file from outside it, or like a set of "
        "liked tracks (cosine similarity of the models' vectors); other performances of a track's work "
        "(a version model's embedding); or its near-duplicate pairs (the same recording)."))
    parser.add_argument("library", type=Path)
    query = parser.add_mutually_exclusive_group(required=True)
    query.add_argument("--track", help="a track id (path relative to the music folder), a path to it, or a row number")
    query.add_argument("--audio", type=Path, help="any audio file (not added to the library)")
    query.add_argument("--like", nargs="+", metavar="ID", help="liked tracks: recommend for their mean profile")
    query.add_argument("--versions", metavar="ID", help="other performances of this track's work (a cover in another "
                       "key, tempo or instrumentation), by the library's version model")
    query.add_argument("--duplicates", action="store_true", help="list near-identical pairs (the same recording)")
    parser.add_argument("-k", type=int, default=10, help="how many tracks (default 10)")
    parser.add_argument("--features", choices=FEATURES, help=(
        "embedding, probabilities (genres/tags) or combined (both), the kind of music; mood (emotion models); "
        "versions (version models). Default: combined, or versions for a library of version models only"))
    parser.add_argument("--diversify", type=float, metavar="LAMBDA",
                        help="maximal marginal relevance: 1 = plain ranking, lower = more varied (e.g. 0.7)")
    parser.add_argument("--threshold", type=float, default=DUPLICATE_THRESHOLD,
                        help="--duplicates: minimum similarity (default: %(default)s, the library's DUPLICATE_THRESHOLD)")
    parser.add_argument("--format", choices=sorted(MATCH_WRITERS), default="table")
    args = parser.parse_args(argv)
    heading = "like"
    try:
        extra = [f"--features {args.features}"] * (args.features not in (None, "versions")) \
            + ["--diversify"] * (args.diversify is not None)
        if args.versions is not None and extra:
            raise ValueError(f"--versions ranks by the versions feature alone, undiversified: drop {' and '.join(extra)}")
        library = Library.open(args.library)
        options = {"k": args.k, "feature": args.features, "diversify": args.diversify}
        if args.duplicates:
            write_duplicates(library.duplicates(args.threshold), args.format, sys.stdout)
            return
        if args.track is not None:  # "" too: it is a bad track id, not "no --track"
            query, matches = library.track(args.track).id, library.similar(args.track, **options)
        elif args.versions is not None:
            query, matches, heading = library.track(args.versions).id, library.versions(args.versions, args.k), "versions of"
        elif args.like:
            query, matches = " + ".join(library.track(t).id for t in args.like), library.like(args.like, **options)
        else:
            labels, matches = library.similar_to_audio(args.audio, **options)
            named = ", ".join(f"{n} {p:.2f}" for n, p in list(labels.items())[:3])
            query = f"{args.audio} ({named})" if named else str(args.audio)
    except (ValueError, OSError) as e:
        fail("recommend", f"{e}")
    MATCH_WRITERS[args.format](query, matches, sys.stdout, heading)


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
        from ..web.app import serve
    except ImportError as e:
        fail("serve", f"the web extra is not installed ({e}); pip install -e '.[web]'")
    try:
        serve(args.library, host=args.host, port=args.port)
    except (ValueError, OSError) as e:
        fail("serve", f"{e}")

