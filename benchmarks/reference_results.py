"""The leaderboard's published reference results: figures from the literature, each with its
citation and where it was checked (``benchmarks/reference_results.yaml``), never mixed with
this repository's own rows."""

from __future__ import annotations

from pathlib import Path

import yaml

REFERENCE_FILE = Path(__file__).with_name("reference_results.yaml")


def reference_section(path: Path = REFERENCE_FILE) -> list[str]:
    """The markdown section of the published figures (none when the file is absent)."""
    if not path.is_file():
        return []
    entries = yaml.safe_load(path.read_text()) or []
    lines = ["## Published reference results", "",
             "Figures from the literature on the real datasets, quoted with their sources. They are not "
             "produced by this repository and are not comparable to the rows above (synthetic data, or "
             "excerpts of a dataset under a split of their own).", ""]
    for entry in entries:
        lines += [f"### {entry['dataset']}", "", entry["citation"].strip(), ""]
        metrics = list(entry["rows"][0]["metrics"])
        lines += ["| model | " + " | ".join(metrics) + " |", "|---|" + "---:|" * len(metrics)]
        lines += [f"| {row['model']} | " + " | ".join(f"{row['metrics'][m]}" for m in metrics) + " |" for row in entry["rows"]]
        lines += ["", f"Checked against: {entry['checked'].strip()}", ""]
    return lines
