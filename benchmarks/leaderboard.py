"""``musiczoo leaderboard RESULTS... [--out leaderboard.md]``: the study's answer from grid results.

For each dataset and split (synthetic data says so in every title):

* one architecture x transform matrix per headline metric (accuracy for genre
  classification; ROC-AUC and PR-AUC for tagging), each cell the mean +- standard
  deviation over seeds with its n, the best cell in bold, with each architecture's
  parameters and training throughput;
* a transform comparison: each transform's difference to Mel, paired by seed (same
  architecture, same seed), its mean +- standard deviation, flagged when the mean is more
  than two standard errors from zero, i.e. larger than what the seeds alone move;
* a heatmap per dataset (PNG, matplotlib), linked from the markdown;
* the cells that failed, with their errors;
* the hand-crafted baseline on the same split (``python -m benchmarks.mfcc_baseline``: MFCC
  statistics + logistic regression), the figure every learned model must beat.

Then one "Reproduce" section with the command per grid, the recommendation tables when
``musiczoo recommend-eval`` results are given too, and the published reference results of
``benchmarks/reference_results.yaml``, kept apart from this repository's own rows.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shlex
import statistics
from pathlib import Path

from benchmarks.baselines import baseline_table, check_baseline, protocol
from benchmarks.reference_results import reference_section
from benchmarks.records import read_numbered_records

METRIC_NAMES = {"test/acc": "accuracy", "test/roc_auc": "ROC-AUC", "test/pr_auc": "PR-AUC", "test/f1_macro": "macro F1",
                "test/r2": "R² (mean over targets)", "test/map": "MAP", "test/mr1": "MR1 (lower is better)",
                "test/p10": "P@10"}
#: The metrics the literature reports for each task, in this order (regression: also R² per target;
#: version identification: Da-TACOS's three, of which only MR1's best is the lowest).
HEADLINE_METRICS = ("test/acc", "test/roc_auc", "test/pr_auc", "test/r2", "test/map", "test/mr1", "test/p10")
LOWER_IS_BETTER = ("test/mr1",)
#: A regression target's own metrics, ``test/<prefix>_<target>``, and their names.
PER_TARGET = {"r2": "R²", "pearson": "Pearson r", "ccc": "CCC"}
DATASET_TITLES = {"gtzan": "GTZAN", "mtat": "MagnaTagATune", "deam": "DEAM", "pmemo": "PMEmo", "covers": "covers",
                  "covers80": "Covers80"}
TRANSFORM_ORDER = ("mel", "mfcc", "stft", "cqt", "chroma")
REFERENCE_TRANSFORM = "mel"
#: Where the heatmaps go, relative to the folder of ``--out`` (``leaderboard.md`` at the
#: repository's root: ``benchmarks/figures``).
FIGURES = Path("benchmarks/figures")


# ---- numbers ---------------------------------------------------------------------------
def metric_name(metric: str) -> str:
    """How a table names a metric: ``accuracy``, ``R² valence``, ..."""
    if metric in METRIC_NAMES:
        return METRIC_NAMES[metric]
    kind, _, target = metric.removeprefix("test/").partition("_")
    return f"{PER_TARGET[kind]} {target}" if kind in PER_TARGET and target else metric


def headline_metrics(records: list[dict]) -> list[str]:
    """The :data:`HEADLINE_METRICS` the records hold, then (regression) each target's R²."""
    found = [m for m in HEADLINE_METRICS if any(r["metrics"].get(m) is not None for r in records)]
    if "test/r2" in found:
        found += list(dict.fromkeys(m for r in records for m in r["metrics"] if m.startswith("test/r2_")))
    return found

def mean_std(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (None for a single value)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def format_spread(values: list[float], signed: bool = False) -> str:
    mean, std = mean_std(values)
    text = f"{mean:+.3f}" if signed else f"{mean:.3f}"
    return f"{text} ± {std:.3f} (n={len(values)})" if std is not None else f"{text} (n=1)"


def paired_difference(by_seed: dict[int, float], reference: dict[int, float]) -> tuple[list[float], bool]:
    """Per-seed differences to the reference transform, and whether their mean is more than
    two standard errors from zero (needs at least two seeds)."""
    differences = [by_seed[s] - reference[s] for s in sorted(set(by_seed) & set(reference))]
    if len(differences) < 2:
        return differences, False
    mean, std = mean_std(differences)
    standard_error = std / math.sqrt(len(differences))
    return differences, abs(mean) > 2 * standard_error


# ---- records ---------------------------------------------------------------------------
#: What the leaderboard reads from each bench record, by status, with the JSON type it must have.
RECORD_FIELDS = {
    "any": {"cell": (str, "a string"), "status": (str, "a string"), "grid": (str, "a string"),
            "dataset_entry": (str, "a string")},
    "ok": {"results": (str, "a string"), "dataset": (str, "a string"), "split": (str, "a string"),
           "synthetic": (bool, "true or false"), "architecture": (str, "a string"), "transform": (str, "a string"),
           "seed": (int, "an integer"), "metrics": (dict, "an object"), "params": ((int, float), "a number"),
           "epochs": (int, "an integer"), "seconds": (dict, "an object"), "hardware": (str, "a string")},
    "failed": {"error": (str, "a string")},
}


def check_record(where: str, record: dict) -> None:
    """A bench record the tables can use, or a ``ValueError`` naming the file, the line and the
    field (a hand-edited or foreign record would otherwise end in a traceback, or a figure from
    an unusable row)."""
    def bad(field: str, what: str):
        value = json.dumps(record.get(field)) if field in record else "missing"
        raise ValueError(f"{where}: {field!r} must be {what}, not {value}")

    status = record.get("status")
    if status not in ("ok", "failed"):
        bad("status", '"ok" or "failed"')
    for field, (kind, what) in {**RECORD_FIELDS["any"], **RECORD_FIELDS[status]}.items():
        value = record.get(field)
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            bad(field, what)
    if status == "ok":
        number = (int, float, type(None))
        if not all(isinstance(v, number) and not isinstance(v, bool) for v in record["metrics"].values()):
            bad("metrics", "an object of numbers (or null)")
        if not isinstance(record["seconds"].get("wall"), (int, float)):
            bad("seconds", 'an object with a "wall" number')
        if not isinstance(record.get("train_samples_per_s"), number):
            bad("train_samples_per_s", "a number or null")
        for field in ("init_from", "freeze"):  # absent (records before transfer cells) or null: from scratch
            if not isinstance(record.get(field), (str, type(None))):
                bad(field, "a string or null")


def read_results(paths: list[Path]) -> list[dict]:
    """The records of every results file, each bench and baseline record checked."""
    records = []
    for path in paths:
        for number, record in read_numbered_records(path):
            if record.get("kind") == "bench":
                check_record(f"{path}, line {number}", record)
            elif record.get("kind") == "baseline":
                check_baseline(f"{path}, line {number}", record)
            records.append(record)
    return records


def latest_cells(records: list[dict]) -> tuple[list[dict], list[dict]]:
    """(the latest ok record of each cell, the cells whose latest attempt failed)."""
    latest: dict[str, dict] = {}
    for record in records:
        if record.get("status") == "ok" or latest.get(record["cell"], {}).get("status") != "ok":
            latest[record["cell"]] = record
    ok = [r for r in latest.values() if r["status"] == "ok"]
    return ok, [r for r in latest.values() if r["status"] == "failed"]


def group_title(dataset: str, split: str, synthetic: bool, title: str | None = None) -> str:
    """A section's title: the grid's ``title`` of its dataset entry (a subset says which) or the
    dataset's name with its split; synthetic data says so."""
    return f"{'SYNTHETIC ' if synthetic else ''}{title or DATASET_TITLES.get(dataset, dataset) + f', `{split}` split'}"


def section_title(group: list[dict], key: tuple) -> str:
    """The title of the section of ``group``, the records of one (dataset, split, synthetic, root) ``key``."""
    return group_title(*key[:3], next((r["title"] for r in group if r.get("title")), None))


def ordered(values, order=()) -> list:
    values = list(dict.fromkeys(values))
    return [v for v in order if v in values] + [v for v in values if v not in order]


# ---- tables -----------------------------------------------------------------------------
def row_label(record: dict) -> str:
    """The architecture, and what its weights started from: ``crnn``, ``crnn (fine-tuned from X)``
    or ``crnn (probe of X)`` (a record of a cell with ``init_from``, see ``zoo/transfer.py``)."""
    source = record.get("init_from")
    if not source:
        return record["architecture"]
    shown = Path(source).name or source  # a folder or checkpoint by its name; an arch.tag or Hub id as given
    return f"{record['architecture']} ({'probe of' if record.get('freeze') else 'fine-tuned from'} {shown})"


def matrix(group: list[dict], metric: str) -> tuple[list[str], list[str], dict]:
    """(rows, transforms, {(row, transform): {seed: value}}); a row is an architecture trained
    one way (:func:`row_label`)."""
    cells: dict[tuple, dict[int, float]] = {}
    for r in group:
        value = r["metrics"].get(metric)
        if value is not None:
            cells.setdefault((row_label(r), r["transform"]), {})[r["seed"]] = value
    architectures = sorted({row_label(r) for r in group})
    transforms = ordered((r["transform"] for r in group), TRANSFORM_ORDER)
    return architectures, transforms, cells


def matrix_table(group: list[dict], metric: str) -> list[str]:
    architectures, transforms, cells = matrix(group, metric)
    means = {key: statistics.fmean(v.values()) for key, v in cells.items()}
    best = (min if metric in LOWER_IS_BETTER else max)(means, key=means.get) if means else None
    lines = ["| architecture | params (M) | train samples/s | " + " | ".join(transforms) + " |",
             "|---|---:|---:|" + "---:|" * len(transforms)]
    for architecture in architectures:
        mine = [r for r in group if row_label(r) == architecture]
        params = statistics.fmean(r["params"] for r in mine) / 1e6
        speeds = [r["train_samples_per_s"] for r in mine if r.get("train_samples_per_s")]
        speed = f"{statistics.fmean(speeds):.0f}" if speeds else "n/a"
        row = []
        for transform in transforms:
            seeds = cells.get((architecture, transform))
            if not seeds:
                row.append("-")
                continue
            text = format_spread(list(seeds.values()))
            row.append(f"**{text}** best" if (architecture, transform) == best else text)
        lines.append(f"| {architecture} | {params:.2f} | {speed} | " + " | ".join(row) + " |")
    return lines


def comparison_table(group: list[dict], metric: str) -> list[str]:
    architectures, transforms, cells = matrix(group, metric)
    others = [t for t in transforms if t != REFERENCE_TRANSFORM]
    if REFERENCE_TRANSFORM not in transforms or not others:
        return []
    lines = ["| architecture | " + " | ".join(f"{t} - {REFERENCE_TRANSFORM}" for t in others) + " |",
             "|---|" + "---:|" * len(others)]
    for architecture in architectures:
        reference = cells.get((architecture, REFERENCE_TRANSFORM), {})
        row = []
        for transform in others:
            differences, beyond = paired_difference(cells.get((architecture, transform), {}), reference)
            row.append("-" if not differences else format_spread(differences, signed=True) + (" **> 2 SE**" if beyond else ""))
        lines.append(f"| {architecture} | " + " | ".join(row) + " |")
    return lines


def heatmap(group: list[dict], metrics: list[str], title: str, path: Path) -> None:
    """Mean over seeds per architecture x transform, one panel per headline metric."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    architectures, transforms, _ = matrix(group, metrics[0])
    figure, axes = plt.subplots(1, len(metrics), figsize=(1.3 + 1.9 * len(transforms) * len(metrics), 0.9 + 0.55 * len(architectures)),
                                squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        _, _, cells = matrix(group, metric)
        means = np.full((len(architectures), len(transforms)), np.nan)
        for (a, t), seeds in cells.items():
            means[architectures.index(a), transforms.index(t)] = statistics.fmean(seeds.values())
        image = ax.imshow(means, cmap="viridis", aspect="auto")
        for (i, j), value in np.ndenumerate(means):
            if not np.isnan(value):
                seeds = list(cells[(architectures[i], transforms[j])].values())
                _, std = mean_std(seeds)
                label = f"{value:.3f}" + (f"\n±{std:.3f}" if std is not None else "")
                ax.text(j, i, label, ha="center", va="center", fontsize=8,
                        color="white" if value < np.nanmean(means) else "black")
        ax.set_xticks(range(len(transforms)), transforms)
        ax.set_yticks(range(len(architectures)), architectures)
        ax.set_title(metric_name(metric), fontsize=10)
        figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    figure.suptitle(title.replace("`", "") + " (mean over seeds)", fontsize=10)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def dataset_section(group: list[dict], failed: list[dict], key: tuple, figures: Path, out_dir: Path,
                    baselines: list[dict] = (), recommend: list[dict] = ()) -> list[str]:
    dataset, split, synthetic, root = key
    title = section_title(group, key)
    metrics = headline_metrics(group)
    seeds = sorted({r["seed"] for r in group})
    epochs = sorted({r["epochs"] for r in group})
    lines = [f"## {title}", ""]
    if synthetic:
        lines += ["**Synthetic data**: these numbers test the pipeline and the runner; they say nothing about "
                  "real music.", ""]
    hardware = sorted({r["hardware"] for r in group})
    lines += [f"{len(group)} cells: seeds {', '.join(map(str, seeds))}; {'/'.join(map(str, epochs))} epochs; "
              f"{sum(r['seconds']['wall'] for r in group) / 60:.0f} min of cell time on {'; '.join(hardware)}. "
              "Cells are mean ± sample standard deviation over seeds of the clip-level test metric.", ""]
    named = re.sub(r"[^a-z0-9]+", "_", title.lower()).strip("_") if any(r.get("title") for r in group) else None
    plain = re.sub(r"[^a-z0-9]+", "_", f"{'synthetic_' if synthetic else ''}{dataset}_{split}".lower()).strip("_")
    picture = figures / f"{named or plain}.png"  # a file name without brackets, signs or slashes
    heatmap(group, metrics, title, picture)
    lines += [f"![{title}]({os.path.relpath(picture, out_dir)})", ""]
    for metric in metrics:
        lines += [f"### {metric_name(metric)}: {title}", "", *matrix_table(group, metric), ""]
    for metric in metrics:
        table = comparison_table(group, metric)
        if table:
            lines += [f"### Transform vs {REFERENCE_TRANSFORM}, {metric_name(metric)}: {title}", "",
                      "Difference to Mel of the same architecture and seed: mean ± standard deviation over seeds. "
                      "**> 2 SE** marks a mean more than two standard errors from zero, i.e. beyond the spread "
                      "that the seeds alone cause. With two or three seeds this is a coarse screen, not a significance "
                      "test (a paired t-test needs 12.7 SE at n = 2 and 4.3 SE at n = 3 for p < 0.05).", "", *table, ""]
    if baselines:
        shown = [m for m in (*metrics, "test/f1_macro") if any(m in b["metrics"] for b in baselines)]
        commands = sorted({" ".join(b.get("command", "").split()[:3]) for b in baselines} - {""})
        how = "; ".join(sorted({protocol(b) for b in baselines}))
        lines += [f"### Hand-crafted baseline: {title}", "",
                  f"{how[0].upper()}{how[1:]}, of the same split; deterministic, so n = 1. Every learned model above should beat "
                  f"it ({', '.join(f'`{c}`' for c in commands) or 'its record names no command'}).", "",
                  *baseline_table(list(baselines), shown, metric_name), ""]
    mine = [r for r in recommend if r["data"].startswith(title)]
    if mine:  # recommend-eval rows labelled with this section's title: the same data's recommendation
        from benchmarks.recommend_eval import render_table

        lines += ["Recommendation on the same data: nearest neighbours by cosine similarity of each library's "
                  "vectors (`musiczoo recommend-eval`), a query's neighbours from other artists only.", "",
                  render_table(mine)]
    if failed:
        lines += [f"### Failed cells: {title}", ""] + [f"- `{r['cell']}`: {r['error']}" for r in failed] + [""]
    return lines


def reproduce_section(records: list[dict], command: str) -> list[str]:
    lines = ["## Reproduce", ""]
    for grid in dict.fromkeys(r["grid"] for r in records):
        mine = [r for r in records if r["grid"] == grid]
        commits = sorted({r["commit"][:12] for r in mine if r.get("commit")}) or ["unknown"]
        lines += [f"- `musiczoo bench {grid}` ({len(mine)} cells, results `{mine[0]['results']}`, "
                  f"commit {', '.join(commits)})"]
    return lines + [f"- then `{command}`", ""]


def recommendation_section(rows: list[dict]) -> list[str]:
    from benchmarks.recommend_eval import render_table

    return ["## Content-based recommendation", "",
            "Nearest neighbours by cosine similarity of each library's vectors (`musiczoo recommend-eval`); "
            "a query's neighbours come from other artists only (Sturm's artist index). Remake with "
            "`bash benchmarks/recommend_synthetic_gtzan.sh`.", "", render_table(rows)]


def render(records: list[dict], figures: Path, out_dir: Path, command: str) -> str:
    bench = [r for r in records if r.get("kind") == "bench"]
    recommend = [r for r in records if "feature" in r and "models" in r]
    ok, failed = latest_cells(bench)
    lines = ["# Leaderboard", "", f"Generated by `{command}`; do not edit by hand. "
             "Every table names its dataset and split; synthetic data says so in every title.", ""]
    def group_key(r):  # the data folder too: a subset of a dataset (its title says which) is not the dataset
        return r["dataset"], r["split"], r["synthetic"], r.get("root")

    groups = ordered(group_key(r) for r in ok)
    entry_group = {r["dataset_entry"]: group_key(r) for r in ok}  # failed records know only the grid's entry
    baselines = [r for r in records if r.get("kind") == "baseline" and r.get("status") == "ok"]
    for key in groups:
        lines += dataset_section([r for r in ok if group_key(r) == key],
                                 [r for r in failed if entry_group.get(r["dataset_entry"]) == key], key, figures, out_dir,
                                 [b for b in baselines if group_key(b) == key], recommend)
    unmatched = [b for b in baselines if group_key(b) not in groups]
    if unmatched:  # a baseline of a dataset and split no learned model was run on: shown, not dropped
        shown = [m for m in (*headline_metrics(unmatched), "test/f1_macro") if any(m in b["metrics"] for b in unmatched)]
        lines += ["## Baselines without learned models", "", *baseline_table(unmatched, shown, metric_name), ""]
    orphans = [r for r in failed if r["dataset_entry"] not in entry_group]
    if orphans:
        lines += ["## Cells that failed", ""] + [f"- `{r['cell']}`: {r['error']}" for r in orphans] + [""]
    if not groups and not orphans:
        lines += ["No results yet.", ""]
    if bench:
        lines += reproduce_section(ok + failed, command)
    titles = [section_title([r for r in ok if group_key(r) == key], key) for key in groups]
    general = [r for r in recommend if not any(r["data"].startswith(title) for title in titles)]
    if general:
        lines += recommendation_section(general)
    lines += reference_section()
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="musiczoo leaderboard", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", type=Path, nargs="+", help="JSON-lines files of musiczoo bench (and recommend-eval)")
    parser.add_argument("--out", type=Path, default=Path("leaderboard.md"))
    parser.add_argument("--figures", type=Path, help=f"folder of the heatmaps (default: {FIGURES} in the folder of --out)")
    args = parser.parse_args(argv)
    missing = [str(p) for p in args.results if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"no results file {', '.join(missing)}")
    records = read_results(args.results)
    default_figures = args.out.parent / FIGURES  # beside the page that links them, wherever it is run from
    command = "musiczoo leaderboard " + " ".join(
        [*map(shlex.quote, map(str, args.results)), "--out", shlex.quote(str(args.out))]
        + (["--figures", shlex.quote(str(args.figures))] if args.figures not in (None, default_figures) else []))
    args.figures = args.figures or default_figures
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render(records, args.figures, args.out.parent, command))
    print(f"{len(records)} records -> {args.out} (figures in {args.figures})")


if __name__ == "__main__":
    main()
