"""Front-end speed: musiczoo's batched torch front-ends against librosa on the same audio.

Baseline: librosa (``melspectrogram``+``power_to_db``, ``mfcc``, ``amplitude_to_db(|stft|)``)
called clip by clip, as a data pipeline that precomputes features would. Contender: the
model's first layer, one batched call. Audio: 16 x 30 s windows of a real music clip
(tests/data/audio/Kevin_MacLeod_-_Vibe_Ace.ogg, CC BY 3.0).

    python -m benchmarks.frontend_speed [--batch 16] [--seconds 30] [--repeats 3] [--threads N]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import librosa
import numpy as np
import soundfile as sf
import torch

from zoo.frontends import create_frontend

CLIP = Path(__file__).resolve().parents[1] / "tests" / "data" / "audio" / "Kevin_MacLeod_-_Vibe_Ace.ogg"


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    y, sr = sf.read(CLIP, dtype="float32")
    n = int(args.seconds * sr)
    starts = np.linspace(0, len(y) - n, args.batch).astype(int)
    batch = np.stack([y[s : s + n] for s in starts])
    x = torch.from_numpy(batch)

    librosa_fns = {
        "mel": lambda a: librosa.power_to_db(librosa.feature.melspectrogram(y=a, sr=sr, n_fft=2048, hop_length=512, n_mels=128)),
        "mfcc": lambda a: librosa.feature.mfcc(y=a, sr=sr, n_mfcc=40, n_fft=2048, hop_length=512, n_mels=128),
        "stft": lambda a: librosa.amplitude_to_db(np.abs(librosa.stft(a, n_fft=1024, hop_length=512))),
    }
    audio_s = args.batch * args.seconds
    print(f"{args.batch} x {args.seconds:g} s of real music at {sr} Hz, torch threads={torch.get_num_threads()}, best of {args.repeats}")
    print(f"{'transform':9s} {'librosa (s)':>12s} {'musiczoo (s)':>13s} {'speed-up vs librosa':>20s} {'musiczoo x realtime':>20s}")
    for name, ref in librosa_fns.items():
        frontend = create_frontend(name, sample_rate=sr)
        with torch.no_grad():
            frontend(x[:1])  # warm-up
            ours = best_of(lambda: frontend(x), args.repeats)
        base = best_of(lambda: [ref(a) for a in batch], args.repeats)
        print(f"{name:9s} {base:12.3f} {ours:13.3f} {base / ours:19.1f}x {audio_s / ours:19.0f}x")


if __name__ == "__main__":
    main()
