"""How ``musiczoo predict`` writes its :class:`~zoo.predict.Prediction` results: a table for people,
JSON and long-format CSV for programs. Each writer streams: a file's result is written (and
flushed) as soon as it is predicted, so a long run shows its progress and a killed one keeps
what it wrote.
"""

from __future__ import annotations

import csv
import itertools
import json
from typing import Iterable

from .predict import Prediction


def predictions_as_table(results: Iterable[Prediction], out) -> None:
    """Human-readable: a header line per file, then one line per label (and per segment)."""
    for r in results:
        if r.error:
            print(f"{r.path}  ERROR: {r.error}", file=out)
            continue
        scale = f", values on the {r.scale[0]:g}-{r.scale[1]:g} scale" if r.scale else ""
        print(f"{r.path}  ({r.duration_s:.1f} s{scale})", file=out)
        width = max(map(len, r.labels))
        for label, p in r.labels.items():
            print(f"  {label:<{width}}  {p:.3f}", file=out)
        for start, end, labs in r.segments or []:
            span = f"{start:.2f}-{end:.2f} s"
            print(f"  {span:>20}  " + ", ".join(f"{k} {v:.3f}" for k, v in labs.items()), file=out)
        out.flush()


def predictions_as_json(results: Iterable[Prediction], out) -> None:
    """One JSON array of ``Prediction.to_dict()`` objects; never a bare NaN or Infinity, which
    is not JSON (``ValueError`` instead: decoding refuses the audio that would give one)."""
    json.dump([r.to_dict() for r in results], out, indent=1, allow_nan=False)
    print(file=out)


PREDICTION_CSV_COLUMNS = ["path", "scope", "start_s", "end_s", "rank", "label", "probability", "error"]


def predictions_as_csv(results: Iterable[Prediction], out) -> None:
    """Long format: one row per (file or segment, label); ``scope`` is ``file`` or ``segment``.
    A regression model's rows hold values, not probabilities: the column is ``value`` and a
    ``scale`` column (e.g. ``1-9``) follows it; ``rank`` is then the target's place in the model's order."""
    results = iter(results)
    first = next(results, None)
    scale = first.scale if first is not None else None
    w = csv.writer(out)
    if scale:
        w.writerow([("value" if c == "probability" else c) for c in PREDICTION_CSV_COLUMNS[:-1]] + ["scale", "error"])
    else:
        w.writerow(PREDICTION_CSV_COLUMNS)
    extra = [f"{scale[0]:g}-{scale[1]:g}"] if scale else []
    results = itertools.chain([first], results) if first is not None else ()
    for r in results:
        if r.error:
            w.writerow([r.path, "file", "", "", "", "", "", *[""] * len(extra), r.error])
            continue
        rows = [("file", 0.0, r.duration_s, r.labels)] + [("segment", s, e, lab) for s, e, lab in r.segments or []]
        for scope, start, end, labs in rows:
            for rank, (label, p) in enumerate(labs.items(), 1):
                w.writerow([r.path, scope, f"{start:.3f}", f"{end:.3f}", rank, label, f"{p:.6f}", *extra, ""])
        out.flush()


PREDICTION_WRITERS = {"table": predictions_as_table, "json": predictions_as_json, "csv": predictions_as_csv}
