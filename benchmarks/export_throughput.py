"""Prediction throughput of an exported model: onnxruntime against PyTorch on the CPU, per architecture.

What a deployment of ``musiczoo export`` gains: each model (random weights; speed does not
depend on their values) is exported to ONNX (``zoo.export.export_model``) and the same real
61-second music clip is predicted end to end by ``predict_files`` twice, once with the PyTorch
model and once with ``runtime="onnx"`` (decoding, chunking, batching and averaging are the same
code; only the model call differs). Every architecture gets the same input settings (log-Mel,
22,050 Hz, 3-second chunks), as in ``benchmarks/predict_throughput.py``.

Reported per architecture and batch size (chunks per forward pass, default 1 and 16): the best
wall time of ``--repeats`` runs after one warm-up (round-robin over everything measured), the
throughput as "x realtime" (audio seconds per wall second) and onnxruntime's throughput as a
ratio against PyTorch's.

    python benchmarks/export_throughput.py [--repeats 3] [--threads N] [--batch-sizes 1 16]

Both runtimes get the same number of threads (``--threads``; default: torch's choice, which
onnxruntime is given too). On a shared machine use ``--threads 1``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import soundfile as sf
import torch

from zoo.export import export_model, load_exported
from zoo.factory import create_model
from zoo.predict import predict_files

#: A minute of real music (CC BY, from librosa/data), beside the repository, never in it.
CLIP = Path(__file__).resolve().parents[2] / "shared" / "data" / "audio" / "Kevin_MacLeod_-_Vibe_Ace.ogg"
ARCHITECTURES = ["resnet_gru", "resnet_vit", "fcn", "crnn", "short_chunk_cnn", "short_chunk_resnet"]


def wall_time(model, args, batch_size: int, runtime: str) -> float:
    start = time.perf_counter()
    list(predict_files(model, [args.clip], batch_size=batch_size, device="cpu", progress=False, runtime=runtime))
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clip", type=Path, default=CLIP)
    parser.add_argument("--architectures", nargs="+", default=ARCHITECTURES)
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 16])
    parser.add_argument("--transform", default="mel")
    parser.add_argument("--sample-rate", type=int, default=22050)
    parser.add_argument("--chunk-seconds", type=float, default=3.0)
    parser.add_argument("--num-classes", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, help="intra-op threads of both runtimes (default: torch's choice)")
    args = parser.parse_args(argv)
    if not args.clip.is_file():
        parser.error(f"no audio file {args.clip}: pass --clip FILE (any real recording)")
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()

    import onnxruntime

    seconds = sf.info(str(args.clip)).duration
    print(f"clip: {args.clip.name} ({seconds:.1f} s); {args.transform} at {args.sample_rate} Hz, "
          f"{args.chunk_seconds:g} s chunks; CPU, {threads} threads each; torch {torch.__version__}, "
          f"onnxruntime {onnxruntime.__version__}; best of {args.repeats} runs\n")
    runs = []  # (arch, batch, runtime, model)
    with tempfile.TemporaryDirectory() as tmp:
        for arch in args.architectures:
            torch.manual_seed(0)
            model = create_model(arch, transform=args.transform, num_classes=args.num_classes,
                                 sample_rate=args.sample_rate, chunk_seconds=args.chunk_seconds).eval()
            exported = load_exported(export_model(model, Path(tmp) / arch), threads=threads)
            for batch in args.batch_sizes:
                runs += [(arch, batch, "torch", model), (arch, batch, "onnx", exported)]
        for arch, batch, runtime, model in runs:  # warm-up: allocator, kernel choice, session's first run
            wall_time(model, args, batch, runtime)
        # Round-robin, so a busy machine slows every run alike; the best run is the least disturbed.
        times = {run[:3]: [] for run in runs}
        for _ in range(args.repeats):
            for arch, batch, runtime, model in runs:
                times[arch, batch, runtime].append(wall_time(model, args, batch, runtime))
    print(f"{'architecture':20s} {'batch':>5s} {'torch':>9s} {'onnx':>9s} {'torch x rt':>11s} {'onnx x rt':>10s} "
          f"{'onnx/torch':>10s}")
    for arch in args.architectures:
        for batch in args.batch_sizes:
            t, o = min(times[arch, batch, "torch"]), min(times[arch, batch, "onnx"])
            print(f"{arch:20s} {batch:5d} {t:8.3f}s {o:8.3f}s {seconds / t:10.1f}x {seconds / o:9.1f}x {t / o:9.2f}x")


if __name__ == "__main__":
    main()
