"""``models``, ``publish``, ``export`` and ``predict MODEL FILES``: the zoo, published folders,
exported files and predictions."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from datamodules.primitives.files import read_json

from .common import fail

#: What a MODEL argument may be, for every verb that takes one.
MODEL_HELP = "published folder, Hugging Face Hub id (owner/name), pretrained name (arch.tag) or a Lightning .ckpt"
#: ``--runtime``'s help, for every verb that runs a model.
RUNTIME_HELP = ("onnx: a MODEL is a file written by musiczoo export (or its folder), run on the CPU by "
                "onnxruntime (default: torch)")


def cmd_models(argv: list[str]) -> None:
    from ..factory import create_model, describe_model, list_models

    parser = argparse.ArgumentParser(prog="musiczoo models", description="List the model zoo.")
    parser.add_argument("pattern", nargs="?", default="*", help="glob filter, e.g. 'resnet_*'")
    parser.add_argument("--num-classes", type=int, default=10)
    parser.add_argument("--pretrained", action="store_true", help="list published weights (arch.tag) instead")
    args = parser.parse_args(argv)
    if args.pretrained:
        from ..pretrained import PRETRAINED, list_pretrained

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
    from ..checkpoint import publish

    meta = {k: v for k, v in (("dataset", args.dataset), ("split", args.split), ("chunk_seconds", args.chunk_seconds))
            if v is not None}  # --chunk-seconds 0 is checked (and refused), not dropped
    if args.synthetic:
        meta["synthetic"] = True
    try:
        metrics = read_json(args.metrics) if args.metrics else None  # a bad file: one line naming it
        out = publish(args.ckpt, args.out_dir, args.push_to_hub, metrics=metrics, force=args.force, **meta)
    except (ValueError, OSError) as e:  # ModelError, UnknownNameError and bad JSON are ValueErrors
        fail("publish", f"{e}")
    print(f"published to {out}" + (f" and https://huggingface.co/{args.push_to_hub}" if args.push_to_hub else ""))


def cmd_export(argv: list[str]) -> None:
    """``musiczoo export MODEL OUT [--format onnx|torchscript] [--opset N] [--force]``."""
    from ..export import DEFAULT_OPSET, EXPORT_FILES, export_model

    parser = argparse.ArgumentParser(prog="musiczoo export", description=(
        "Write a model as one ONNX or TorchScript file, front-end included: raw audio (batch, samples) at the "
        "model's sample rate in, logits and the embedding out; config.json (the spec) beside it and inside it."))
    parser.add_argument("model", help=MODEL_HELP)
    parser.add_argument("out", type=Path, help="a folder (model.onnx / model.pt goes in it) or a .onnx / .pt file")
    parser.add_argument("--format", choices=sorted(EXPORT_FILES), default="onnx")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET}, "
                        "the first with STFT)")
    parser.add_argument("--force", action="store_true", help="replace an existing exported file")
    args = parser.parse_args(argv)
    try:
        model = load_model(args.model)
        path = export_model(model, args.out, fmt=args.format, opset=args.opset, force=args.force)
    except (ValueError, OSError, ImportError) as e:  # ModelError is a ValueError; ImportError names the extra
        fail("export", f"{e}")
    print(f"exported {args.model} to {path} (and {path.parent / 'config.json'})")


def load_model(argument: str, runtime: str = "torch"):
    """The model a command-line argument names (``zoo.factory.ModelSource``: a published folder, a Hub
    id, an ``arch.tag`` name or a Lightning ``.ckpt``; with ``runtime="onnx"``, an exported file or its
    folder), resolved once; a fetch from the Hub is announced on stderr first."""
    from ..factory import ModelSource

    if runtime == "onnx":
        from ..exported import load_exported

        return load_exported(argument)

    source = ModelSource.parse(argument)
    if source.hub_id:
        print(f"musiczoo: fetching {source.hub_id} from the Hugging Face Hub"
              + (f" (pretrained {argument})" if source.kind == "pretrained" else ""), file=sys.stderr, flush=True)
    return source.load()


def cmd_predict(argv: list[str]) -> None:
    """``musiczoo predict MODEL AUDIO_OR_DIR ...``; exits with status 1 if any file could not be read."""
    from datamodules.primitives.audio_files import expand_audio_paths
    from ..predict import RUNTIMES, predict_files, refuse_urls
    from ..prediction_formats import PREDICTION_WRITERS

    parser = argparse.ArgumentParser(prog="musiczoo predict", description=(
        "Predict genres or tags of audio files (folders are searched recursively). Each file is cut into "
        "the model's chunk length and the chunk probabilities are averaged."))
    parser.add_argument("model", help=MODEL_HELP)
    parser.add_argument("audio", nargs="+", help="audio files or folders; - reads standard input (cat song.wav | "
                                                 "musiczoo predict MODEL -); URLs are not read")
    parser.add_argument("--top-k", type=int, default=5, help="labels per file (0: all; default 5)")
    parser.add_argument("--format", choices=sorted(PREDICTION_WRITERS), default="table")
    parser.add_argument("--segments", action="store_true", help="also print each chunk's prediction")
    parser.add_argument("--batch-size", type=int, default=16, help="chunks per forward pass")
    parser.add_argument("--device", help="e.g. cpu, cuda, cuda:1 (default: cuda if available)")
    parser.add_argument("--runtime", choices=RUNTIMES, default="torch", help=RUNTIME_HELP)
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error("--batch-size must be at least 1")
    try:
        refuse_urls(args.audio)
        model = load_model(args.model, args.runtime)
    except (ValueError, OSError, ImportError) as e:  # ModelError and UnknownNameError are ValueErrors
        fail("predict", f"{e}")
    files = expand_audio_paths(args.audio)
    if not files:
        fail("predict", f"no audio files in {', '.join(args.audio)}")
    failures = []

    def tracked():
        for r in predict_files(model, files, top_k=args.top_k, segments=args.segments,
                               batch_size=args.batch_size, device=args.device, runtime=args.runtime):
            if r.error:
                failures.append(r.path)
            yield r

    PREDICTION_WRITERS[args.format](tracked(), sys.stdout)
    sys.stdout.flush()
    if failures:
        print(f"musiczoo predict: {len(failures)} of {len(files)} files could not be read: "
              f"{', '.join(failures[:5])}{', ...' if len(failures) > 5 else ''}", file=sys.stderr)
        sys.exit(1)

