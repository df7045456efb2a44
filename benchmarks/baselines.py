"""The hand-crafted baselines' records as the leaderboard reads and shows them.

A baseline (``benchmarks/mfcc_baseline.py`` for genres, ``benchmarks/emotion_baseline.py`` for
valence and arousal) is fitted on the training part of a split, tuned on its validation part
and scored once on its test part; a version baseline (``benchmarks/covers_baseline.py``) fits
nothing and ranks the test part's performances against each other. Each record says which in
its ``protocol``; all are deterministic, so they have no seed spread, and each appends one
``"kind": "baseline"`` record that ``musiczoo leaderboard`` shows under the learned models of
the same dataset and split.
"""

from __future__ import annotations

import json
from typing import Callable


def check_baseline(where: str, record: dict) -> None:
    """A baseline record the tables can use, or a ``ValueError`` naming the file, the line and the field."""
    for field, kind, what in (("baseline", str, "a string"), ("dataset", str, "a string"), ("split", str, "a string"),
                              ("synthetic", bool, "true or false"), ("metrics", dict, "an object"),
                              ("clips", dict, "an object")):
        if not isinstance(record.get(field), kind):
            value = json.dumps(record.get(field)) if field in record else "missing"
            raise ValueError(f"{where}: {field!r} must be {what}, not {value}")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in record["metrics"].values()):
        raise ValueError(f"{where}: 'metrics' must be an object of numbers, not {json.dumps(record['metrics'])}")


#: How the classifiers and regressors are fitted and scored (their records' ``protocol``).
FITTED = "fitted on the training part, its regularisation chosen on the validation part, scored once on the test part"

#: How the version baselines are scored: there is nothing to fit, so nothing sees the training part.
RANKED = "nothing fitted, every performance of the test part ranks all the others by similarity"


def protocol(record: dict) -> str:
    """How the baseline was fitted and scored; records written before the field existed were all fitted."""
    return record.get("protocol", FITTED)


def tuned(record: dict) -> str:
    """What the validation part chose: ``C=0.1`` (logistic regression), ``alpha valence 10, arousal 10`` (ridge)."""
    if "C" in record:
        return f"C={record['C']}"
    alpha = record.get("alpha")
    if isinstance(alpha, dict):
        return "alpha " + ", ".join(f"{name} {value:g}" for name, value in alpha.items())
    return "" if alpha is None else f"alpha={alpha}"


def baseline_table(baselines: list[dict], metrics: list[str], name_of: Callable[[str], str]) -> list[str]:
    """One row per hand-crafted baseline: its test ``metrics`` (named by ``name_of``; no seed spread),
    what its validation part chose, and the clips it was fitted, tuned and tested on."""
    lines = ["| baseline | features | " + " | ".join(name_of(m) for m in metrics)
             + " | clips train / val / test |", "|---|---|" + "---:|" * (len(metrics) + 1)]
    for r in baselines:
        values = [f"{r['metrics'][m]:.3f}" if isinstance(r["metrics"].get(m), (int, float)) else "-" for m in metrics]
        clips = " / ".join(str(r["clips"].get(part, "-")) for part in ("train", "val", "test"))
        chosen = f" ({tuned(r)})" if tuned(r) else ""
        lines.append(f"| {r['baseline']}{chosen} | {r.get('features', '')} | " + " | ".join(values) + f" | {clips} |")
    return lines
