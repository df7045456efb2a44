"""The model card: a Hugging Face ``README.md`` generated from a model's spec.

Pure text from the spec (and the record of what wrote it): what the model does, how to use it, what it was trained on
(and, loudly, whether that was synthetic), its results and its limitations.
"""

from __future__ import annotations

import json
import shlex

import yaml

_METRIC_IDS = {"acc": "accuracy", "f1_macro": "f1", "roc_auc": "roc_auc", "pr_auc": "pr_auc", "r2": "r_squared"}
_TASK_TAGS = {"multiclass": "genre-classification", "multilabel": "music-tagging", "regression": "audio-regression",
              "versions": "cover-song-identification"}
_DATASET_NOTES = {
    "gtzan": "GTZAN has known faults (repeated excerpts, mislabelled and distorted clips; Sturm 2013) and "
             "artist overlap between random splits; only the fault-filtered split (Kereliuk & Sturm) gives "
             "numbers comparable with the literature, random or k-fold splits inflate them.",
    "mtat": "MagnaTagATune tags are noisy, unbalanced and partly synonymous (e.g. 'female', 'woman'); "
            "a missing tag does not mean the tag does not apply.",
}


def transfer_note(provenance) -> str | None:
    """What the weights started from (``init_from``, see ``zoo.transfer``), or None for a model trained from scratch."""
    if not provenance.init_from:
        return None
    if provenance.freeze == "encoder":
        return (f"Linear probe on `{provenance.init_from}`: the encoder is that model's, frozen; only the head "
                "was trained on this data.")
    return f"Fine-tuned from `{provenance.init_from}`: its weights were the starting point of the training."


def model_card(spec, record: dict, model_id: str) -> str:
    """A Hugging Face model card: YAML metadata, usage, training data, results, limitations.

    ``spec`` is the model's ``zoo.spec.ModelSpec``; ``record`` holds what wrote it
    (``num_parameters``, ``versions``, ``git_commit``, as in config.json)."""
    arch, transform, task = spec.architecture, spec.transform, spec.task
    dataset, synthetic, split = spec.provenance.dataset, spec.provenance.synthetic, spec.provenance.split
    metrics = spec.provenance.metrics
    header = {
        "library_name": "musiczoo",
        "pipeline_tag": "audio-classification",
        "tags": ["audio-classification", "music", task, _TASK_TAGS[task], arch, transform] + (["synthetic-data"] if synthetic else []),
    }
    if dataset:
        header["datasets"] = [f"synthetic-{dataset}" if synthetic and "synthetic" not in dataset else dataset]
    if metrics:
        header["metrics"] = sorted({_METRIC_IDS.get(k.split("/")[-1], k.split("/")[-1]) for k in metrics})
    data_name = f"synthetic {dataset or 'data'}" if synthetic else dataset or "an unrecorded dataset"
    split = f", split `{split}`" if split else ""
    what = {"multiclass": "music genre classification (one label per clip, softmax)",
            "multilabel": "music auto-tagging (independent tags, sigmoid)",
            "regression": "regression of continuous targets such as valence and arousal",
            "versions": ("version identification (cover song recognition): its embedding retrieves other "
                         "performances of a work, also of works it was not trained on")}[task]
    if task == "regression":
        scale = f" on the scale {spec.target_scale[0]:g}-{spec.target_scale[1]:g}" if spec.target_scale else ""
        outputs, averaged, shown = f"{spec.num_classes} values{scale}", "chunk values", "{target: value}"
    else:
        outputs, averaged, shown = f"{spec.num_classes} logits", "chunk probabilities", "{label: probability}"
    labels = spec.label_names
    lines = [
        "---", yaml.safe_dump(header, sort_keys=False).strip(), "---", "",
        f"# {arch} on {transform} features: {data_name}", "",
        f"A musiczoo model for {what} from raw audio. The {transform} front-end is the model's first "
        f"layer, so the model takes a mono waveform at {spec.sample_rate} Hz and returns "
        f"{outputs}; files are cut into {spec.chunk_seconds:g}-second chunks "
        f"and the {averaged} are averaged.", "",
    ]
    if synthetic:
        lines += ["> **This model was trained on synthetic data** (generated signals, not recorded music). "
                  "It exists to test the pipeline; its predictions on real music mean nothing.", ""]
    lines += [
        "## Usage", "", "```python", "from zoo import from_pretrained", "",
        f"model = from_pretrained({model_id!r})",
        f'print(model.predict("song.mp3"))  # {shown}', "```", "",
        "```bash", f"musiczoo predict {shlex.quote(model_id)} song.mp3 my_music/ --top-k 3", "```", "",
        "## Model", "",
        "| architecture | transform | sample rate | chunk | parameters | task |", "|---|---|---|---|---|---|",
        f"| {arch} | {transform} | {spec.sample_rate} Hz | {spec.chunk_seconds:g} s | "
        f"{record.get('num_parameters', 0) / 1e6:.2f} M | {task} |", "",
        f"Transform parameters: `{json.dumps(spec.transform_params)}`; model parameters: "
        f"`{json.dumps(spec.model_params)}`.", "",
        f"Labels ({len(labels)}): {', '.join(f'`{n}`' for n in labels)}.", "",
        "## Training data", "",
    ]
    if synthetic:
        layout = f" in the on-disk layout of {dataset}{split}" if dataset else split
        lines.append(f"Generated audio{layout}: the training data was synthetic, not real music.")
    elif dataset:
        lines.append(f"{dataset}{split}.")
    else:
        lines.append("Not recorded.")
    transfer = transfer_note(spec.provenance)
    if transfer:
        lines += ["", transfer]
    lines += ["", "## Results", ""]
    if metrics:
        lines += ["| metric | value |", "|---|---|"] + [f"| {k} | {v:.4f} |" for k, v in sorted(metrics.items())]
        lines.append("\nClip-level metrics (mean of the chunk probabilities of each clip) on the test split.")
    else:
        lines.append("No test results were recorded with this model.")
    lines += [
        "", "## Limitations", "",
        f"- Audio is mixed down to mono and resampled to {spec.sample_rate} Hz; anything above "
        f"{spec.sample_rate // 2} Hz is ignored.",
        "- The model always answers with its own label set: speech, silence or music outside the training "
        "data still get confident-looking " + {"multiclass": "probabilities that sum to 1.",
                                               "multilabel": "probabilities.", "regression": "values.",
                                               "versions": "probabilities over its training works."}[task],
        "- Labels reflect the training dataset's taxonomy and annotators, and its biases in genre, era and culture.",
    ]
    note = _DATASET_NOTES.get((dataset or "").lower().replace("synthetic_", "").replace("synthetic-", ""))
    if note and not synthetic:
        lines.append(f"- {note}")
    if synthetic:
        lines.append("- Trained on synthetic data: not for use on real music.")
    lines += [
        "", "## Reproducibility", "",
        f"Written by musiczoo {record['versions'].get('musiczoo')} (torch {record['versions'].get('torch')}, "
        f"torchaudio {record['versions'].get('torchaudio')}, lightning {record['versions'].get('lightning')}, "
        f"timm {record['versions'].get('timm')}); source commit `{record.get('git_commit') or 'unknown'}`. "
        "Everything needed to rebuild the model is in `config.json`.", "",
    ]
    return "\n".join(lines)


