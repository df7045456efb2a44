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
ratio against PyTorch's, end to end and for the model calls alone (the clip's chunks, decoded
once, through the model: what the runtime changes, without the decoding both share).

    python benchmarks/export_throughput.py [--repeats 3] [--threads N] [--batch-sizes 1 16]

``--int8`` adds each model quantised with ``onnxruntime.quantization.quantize_dynamic`` (int8
weights, activations quantised on the fly), timed the same way, and the share of real clips
(``--excerpts``: the GTZAN excerpts beside the repository, ``--agreement-files`` of them spread
over the genres) whose clip-level top-1 label is the PyTorch model's, for the float ONNX file and
the int8 one.

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
EXCERPTS = CLIP.parents[1] / "gtzan_excerpts"
ARCHITECTURES = ["resnet_gru", "resnet_vit", "fcn", "crnn", "short_chunk_cnn", "short_chunk_resnet"]


def wall_time(model, args, batch_size: int, runtime: str) -> float:
    start = time.perf_counter()
    list(predict_files(model, [args.clip], batch_size=batch_size, device="cpu", progress=False,
                       runtime="torch" if runtime == "torch" else "onnx"))
    return time.perf_counter() - start


def model_time(model, chunks: torch.Tensor, batch_size: int) -> float:
    """The model calls alone: the clip's chunks, already decoded, through the model ``batch_size`` at a time."""
    start = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(chunks), batch_size):
            model(chunks[i:i + batch_size])
    return time.perf_counter() - start


def clip_chunks(path: Path, sample_rate: int, chunk_seconds: float) -> torch.Tensor:
    """The evaluation chunks ``predict_files`` cuts the clip into, as one (chunks, samples) tensor."""
    from datamodules.primitives.audio import load_audio
    from datamodules.primitives.chunks import chunk_samples, chunk_starts

    audio = load_audio(path, sample_rate)
    size = chunk_samples(chunk_seconds, sample_rate)
    return torch.stack([audio[s:s + size] for s in chunk_starts(len(audio), size).tolist()])


def quantised(path: Path) -> Path:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out = path.with_name("model.int8.onnx")
    quantize_dynamic(path, out, weight_type=QuantType.QInt8)
    return out


def top1(model, files, runtime: str) -> list[str]:
    return [next(iter(r.labels)) for r in predict_files(model, files, top_k=1, device="cpu", progress=False,
                                                        runtime=runtime)]


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
    parser.add_argument("--int8", action="store_true", help="also int8 dynamic quantisation, and top-1 agreement")
    parser.add_argument("--excerpts", type=Path, default=EXCERPTS, help="real clips for the top-1 agreement")
    parser.add_argument("--agreement-files", type=int, default=50)
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
    runtimes = ["torch", "onnx"] + (["int8"] if args.int8 else [])
    runs, agreement = [], {}  # runs: (arch, batch, runtime, model)
    if args.int8:
        from datamodules.primitives.audio_files import list_audio_files

        everything = list_audio_files(args.excerpts)
        excerpts = everything[::max(1, len(everything) // args.agreement_files)][:args.agreement_files]
    with tempfile.TemporaryDirectory() as tmp:
        for arch in args.architectures:
            torch.manual_seed(0)
            model = create_model(arch, transform=args.transform, num_classes=args.num_classes,
                                 sample_rate=args.sample_rate, chunk_seconds=args.chunk_seconds).eval()
            path = export_model(model, Path(tmp) / arch)
            models = {"torch": model, "onnx": load_exported(path, threads=threads)}
            if args.int8:
                models["int8"] = load_exported(quantised(path), threads=threads)
                reference = top1(model, excerpts, "torch")
                for name in ("onnx", "int8"):
                    same = sum(a == b for a, b in zip(reference, top1(models[name], excerpts, "onnx")))
                    agreement[arch, name] = same / len(excerpts)
            for batch in args.batch_sizes:
                runs += [(arch, batch, runtime, models[runtime]) for runtime in runtimes]
        chunks = clip_chunks(args.clip, args.sample_rate, args.chunk_seconds)
        for arch, batch, runtime, model in runs:  # warm-up: allocator, kernel choice, session's first run
            wall_time(model, args, batch, runtime)
        # Round-robin, so a busy machine slows every run alike; the best run is the least disturbed.
        times = {run[:3]: [] for run in runs}
        calls = {run[:3]: [] for run in runs}
        for _ in range(args.repeats):
            for arch, batch, runtime, model in runs:
                times[arch, batch, runtime].append(wall_time(model, args, batch, runtime))
                calls[arch, batch, runtime].append(model_time(model, chunks, batch))
    others = runtimes[1:]
    print(f"end to end (decode, chunk, model, clip mean), and the model calls alone ({len(chunks)} chunks):")
    print(f"{'architecture':20s} {'batch':>5s} {'torch x rt':>11s} "
          + " ".join(f"{r + ' x rt':>10s} {r + '/torch':>10s}" for r in others)
          + " " + " ".join(f"{'model ' + r + '/torch':>18s}" for r in others))
    for arch in args.architectures:
        for batch in args.batch_sizes:
            t, m = min(times[arch, batch, "torch"]), min(calls[arch, batch, "torch"])
            cells = [(seconds / min(times[arch, batch, r]), t / min(times[arch, batch, r])) for r in others]
            print(f"{arch:20s} {batch:5d} {seconds / t:10.1f}x " + " ".join(f"{s:9.1f}x {q:9.2f}x" for s, q in cells)
                  + " " + " ".join(f"{m / min(calls[arch, batch, r]):17.2f}x" for r in others))
    if agreement:
        print(f"\nclip-level top-1 equal to PyTorch's on {len(excerpts)} real clips ({args.excerpts}):")
        for arch in args.architectures:
            print(f"{arch:20s} onnx {agreement[arch, 'onnx']:6.1%}   int8 {agreement[arch, 'int8']:6.1%}")


if __name__ == "__main__":
    main()
