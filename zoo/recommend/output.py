"""Recommendations as a table, JSON or CSV (the formats ``musiczoo predict`` writes).

Each writer takes the query, its matches, the stream and ``heading``, what the matches are to the
query (``like``, or ``versions of``): the table's header says it; JSON and CSV name the query alone."""

from __future__ import annotations

import csv
import json

from .library import Match

CSV_COLUMNS = ["query", "rank", "id", "similarity", "shared", "labels", "duration_s", "path"]


def matches_as_table(query: str, matches: list[Match], out, heading: str = "like") -> None:
    """A header naming the query, then one line per match: rank, similarity, id, shared labels."""
    print(f"{heading} {query}:", file=out)
    width = max((len(m.id) for m in matches), default=0)
    for m in matches:
        shared = f"  shares {', '.join(m.shared)}" if m.shared else ""
        print(f"  {m.rank:>3}  {m.similarity:6.3f}  {m.id:<{width}}  ({m.duration_s:.1f} s){shared}", file=out)


def matches_as_json(query: str, matches: list[Match], out, heading: str = "like") -> None:
    json.dump({"query": query, "matches": [m.to_dict() for m in matches]}, out, indent=1, allow_nan=False)
    print(file=out)


def matches_as_csv(query: str, matches: list[Match], out, heading: str = "like") -> None:
    w = csv.writer(out)
    w.writerow(CSV_COLUMNS)
    for m in matches:
        w.writerow([query, m.rank, m.id, f"{m.similarity:.6f}", ";".join(m.shared),
                    ";".join(f"{k}={v:.4f}" for k, v in m.labels.items()), f"{m.duration_s:.3f}", m.path])


MATCH_WRITERS = {"table": matches_as_table, "json": matches_as_json, "csv": matches_as_csv}


def write_duplicates(pairs: list[tuple[str, str, float]], fmt: str, out) -> None:
    """Near-identical pairs, most similar first, in the same three formats."""
    if fmt == "json":
        json.dump([{"a": a, "b": b, "similarity": s} for a, b, s in pairs], out, indent=1, allow_nan=False)
        print(file=out)
    elif fmt == "csv":
        w = csv.writer(out)
        w.writerow(["a", "b", "similarity"])
        w.writerows([a, b, f"{s:.6f}"] for a, b, s in pairs)
    else:
        print(f"{len(pairs)} near-duplicate pairs", file=out)
        for a, b, s in pairs:
            print(f"  {s:6.4f}  {a}  =  {b}", file=out)
