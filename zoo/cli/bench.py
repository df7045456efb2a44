"""``bench``, ``leaderboard`` and ``recommend-eval``: the verbs that run ``benchmarks/`` (the only
part of ``zoo`` that imports it)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .common import fail

def cmd_recommend_eval(argv: list[str]) -> None:
    """``musiczoo recommend-eval LIBRARY [LIBRARY ...] --dataset gtzan|mtat``."""
    from benchmarks.recommend_eval import evaluate_libraries, render_table

    parser = argparse.ArgumentParser(prog="musiczoo recommend-eval", description=(
        "Score recommendations of libraries indexed from a labelled collection (GTZAN or MagnaTagATune layout) "
        "for every feature choice, against a random and an MFCC mean+std baseline."))
    parser.add_argument("libraries", nargs="+", type=Path)
    parser.add_argument("--dataset", choices=["gtzan", "mtat"], required=True)
    parser.add_argument("--split", default="test", help="the part of the GTZAN / MTAT top-50 split (default test)")
    parser.add_argument("--gtzan-split", choices=["fault_filtered", "artist"], default="fault_filtered",
                        help="the GTZAN split: the Kereliuk-Sturm lists, or artist-disjoint parts of the library's tracks")
    parser.add_argument("--label", help="what the tables call the data, e.g. 'REAL GTZAN excerpts, artist-disjoint test part'")
    parser.add_argument("-k", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0, help="of the random baseline")
    parser.add_argument("--results", type=Path, help="append the rows to this JSON-lines file")
    args = parser.parse_args(argv)
    try:
        rows = evaluate_libraries(args.libraries, args.dataset, split=args.split, k=args.k, seed=args.seed,
                                  gtzan_split=args.gtzan_split, label=args.label)
    except (ValueError, OSError) as e:
        fail("recommend-eval", f"{e}")
    if args.results:
        args.results.parent.mkdir(parents=True, exist_ok=True)
        with open(args.results, "a") as f:
            f.writelines(json.dumps(row) + "\n" for row in rows)
    print(render_table(rows))


def cmd_bench(argv: list[str]) -> None:
    """``musiczoo bench GRID.yaml``: see ``benchmarks/grid.py``."""
    from benchmarks.grid import main as bench

    bench(argv)


def cmd_leaderboard(argv: list[str]) -> None:
    """``musiczoo leaderboard RESULTS... --out leaderboard.md``: see ``benchmarks/leaderboard.py``."""
    from benchmarks.leaderboard import main as leaderboard

    leaderboard(argv)

