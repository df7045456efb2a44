"""Prediction throughput per architecture: seconds of audio tagged per second of wall time.

What a user of ``musiczoo predict`` waits for: each model is published (save_pretrained),
loaded back with ``from_pretrained`` and run end to end by ``predict_files`` on a real
61-second music clip (decoding, chunking, batching, front-end, network, averaging). The
weights are random (speed does not depend on their values). Every architecture gets the
same input settings (default: log-Mel, 22,050 Hz, 3-second chunks) so the numbers compare
the networks, not their papers' preprocessing.

Reported per architecture: the published folder size, the best wall time of
``--repeats`` runs after one warm-up (run round-robin over the architectures), the throughput as "x realtime" (audio seconds per
wall second) and that throughput relative to a named baseline (``--baseline``, fcn by
default: the classic fully convolutional tagger).

    python benchmarks/predict_throughput.py [--device cpu] [--repeats 3] [--threads N]

On a shared machine use ``--threads 1``: with every core busy, torch's multi-threaded
kernels wait on descheduled threads and the timings swing by several times.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import soundfile as sf
import torch

from zoo.factory import create_model, from_pretrained
from zoo.hub import save_pretrained
from zoo.predict import predict_files

#: A minute of real music (CC BY, from librosa/data), beside the repository, never in it.
CLIP = Path(__file__).resolve().parents[2] / "shared" / "data" / "audio" / "Kevin_MacLeod_-_Vibe_Ace.ogg"
ARCHITECTURES = ["resnet_gru", "resnet_vit", "fcn", "crnn", "short_chunk_cnn", "short_chunk_resnet"]


def published(arch: str, args) -> tuple[torch.nn.Module, int, int]:
    """(model loaded back from its published folder, parameter count, folder size in bytes)."""
    torch.manual_seed(0)
    model = create_model(arch, transform=args.transform, num_classes=args.num_classes, sample_rate=args.sample_rate)
    params = sum(p.numel() for p in model.parameters())
    with tempfile.TemporaryDirectory() as tmp:
        folder = save_pretrained(model.eval(), tmp, chunk_seconds=args.chunk_seconds)
        size = sum(f.stat().st_size for f in folder.iterdir())
        return from_pretrained(folder), params, size


def wall_time(model, args) -> float:
    start = time.perf_counter()
    list(predict_files(model, [args.clip], batch_size=args.batch_size, device=args.device, progress=False))
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clip", type=Path, default=CLIP)
    parser.add_argument("--architectures", nargs="+", default=ARCHITECTURES)
    parser.add_argument("--baseline", default="fcn")
    parser.add_argument("--transform", default="mel")
    parser.add_argument("--sample-rate", type=int, default=22050)
    parser.add_argument("--chunk-seconds", type=float, default=3.0)
    parser.add_argument("--num-classes", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if not args.clip.is_file():
        parser.error(f"no audio file {args.clip}: pass --clip FILE (any real recording)")
    if args.baseline not in args.architectures:
        parser.error(f"--baseline {args.baseline} must be one of the measured architectures")
    if args.threads:
        torch.set_num_threads(args.threads)

    seconds = sf.info(str(args.clip)).duration
    print(f"clip: {args.clip.name} ({seconds:.1f} s); {args.transform} at {args.sample_rate} Hz, "
          f"{args.chunk_seconds:g} s chunks, batch {args.batch_size}; device {args.device}, "
          f"{torch.get_num_threads()} threads; torch {torch.__version__}; best of {args.repeats} runs\n")
    rows = []
    for arch in args.architectures:
        model, params, size = published(arch, args)
        wall_time(model, args)  # warm-up: allocator, oneDNN/cuDNN kernel choice
        rows.append({"arch": arch, "model": model, "params": params, "size": size, "times": []})
    # Round-robin, so a busy machine slows every architecture alike; the best run is the
    # least disturbed estimate of each one's cost.
    for _ in range(args.repeats):
        for r in rows:
            r["times"].append(wall_time(r["model"], args))
    for r in rows:
        r["wall"] = min(r["times"])
    base_speed = seconds / next(r["wall"] for r in rows if r["arch"] == args.baseline)
    print(f"{'architecture':20s} {'params':>8s} {'folder':>9s} {'wall':>8s} {'x realtime':>11s} {'vs ' + args.baseline:>8s}")
    for r in rows:
        speed = seconds / r["wall"]
        print(f"{r['arch']:20s} {r['params'] / 1e6:7.2f}M {r['size'] / 2**20:7.2f}MB {r['wall']:7.3f}s "
              f"{speed:10.1f}x {speed / base_speed:7.2f}x")


if __name__ == "__main__":
    main()
