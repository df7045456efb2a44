"""``synth``, ``download`` and ``verify``: datasets in their real on-disk layouts."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import fail

def _synth_parser(sub, name: str, help: str, seconds: float, sample_rate: int) -> argparse.ArgumentParser:
    """The arguments every synthetic dataset takes, with that dataset's real clip length and rate as defaults."""
    parser = sub.add_parser(name, help=help)
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seconds", type=float, default=seconds)
    parser.add_argument("--sample-rate", type=int, default=sample_rate)
    return parser


def cmd_synth(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="musiczoo synth", description="Write a synthetic dataset in a real on-disk layout.")
    sub = parser.add_subparsers(dest="dataset", required=True)
    gtzan = _synth_parser(sub, "gtzan", "GTZAN layout: <layout>/<genre>/<genre>.000NN.wav|au", 30.0, 22050)
    gtzan.add_argument("--clips-per-genre", type=int, default=100)
    gtzan.add_argument("--layout", choices=["genres_original", "genres"], default="genres_original")
    gtzan.add_argument("--format", dest="fmt", choices=["wav", "au"], default=None,
                       help="default: the layout's own (wav for genres_original, au for genres)")
    mtat = _synth_parser(sub, "mtat", "MagnaTagATune layout: 0..f/<clip>.mp3 + annotations_final.csv", 29.1, 16000)
    mtat.add_argument("--n-clips", type=int, default=200)
    mtat.add_argument("--n-broken", type=int, default=3, help="empty or truncated mp3 files, as on the real release")
    deam = _synth_parser(sub, "deam", "DEAM layout: MEMD_audio/<song_id>.mp3 + the static annotations averaged per song",
                         45.0, 44100)
    deam.add_argument("--n-songs", type=int, default=200, help="the last 15%% (at most 58) are the test part, ids from 2001")
    covers = _synth_parser(sub, "covers", "a clique table: audio/<work>/<performance>.wav + cliques.csv, several "
                           "performances of each work in another key, tempo, instrumentation and structure", 12.0, 22050)
    covers.add_argument("--works", type=int, default=60)
    covers.add_argument("--versions", type=int, default=4, help="performances of each work")
    args = parser.parse_args(argv)
    if args.dataset == "covers":
        from datamodules.synthetic_covers import make_synthetic_covers

        root = make_synthetic_covers(args.out, n_works=args.works, versions=args.versions, seconds=args.seconds,
                                     sample_rate=args.sample_rate, seed=args.seed)
        print(f"synthetic covers written to {root}")
    if args.dataset == "deam":
        from datamodules.synthetic_emotion import make_synthetic_deam

        root = make_synthetic_deam(args.out, n_songs=args.n_songs, seconds=args.seconds,
                                   sample_rate=args.sample_rate, seed=args.seed)
        print(f"synthetic DEAM written to {root}")
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


def cmd_download(argv: list[str]) -> None:
    """``musiczoo download gtzan|mtat --root DIR [--lists-only]``: fetch (resumable, checked), unpack, verify."""
    from datamodules.download import RELEASES, DownloadError, download

    parser = argparse.ArgumentParser(prog="musiczoo download", description=(
        "Download a dataset from its known sources (tried in order; interrupted downloads resume), check sizes "
        "and checksums, unpack it into the layout the data modules read, fetch its split lists into ROOT/splits, "
        "then verify it."))
    parser.add_argument("dataset", choices=sorted(RELEASES))
    parser.add_argument("--root", type=Path, required=True, help="where the dataset goes")
    parser.add_argument("--delete-archives", action="store_true", help="remove the archives after unpacking")
    parser.add_argument("--lists-only", action="store_true",
                        help="fetch only the split lists (for a ROOT that already holds the audio)")
    parser.add_argument("--workers", type=int, help="decoding processes for the verification")
    args = parser.parse_args(argv)
    try:
        reports = download(args.dataset, args.root, keep_archives=not args.delete_archives, lists_only=args.lists_only)
    except (DownloadError, OSError) as e:
        fail("download", f"{e}")
    for report in reports:
        for attempt in report.attempts:
            print(f"{report.name}: {attempt.source}: {attempt.outcome}")
    if args.lists_only:
        return
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

