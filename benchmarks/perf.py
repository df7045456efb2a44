"""Where the time goes: data loading, training steps, cache build and front-ends, in one run.

Every section prints musiczoo against a named baseline, as a ratio, on real music (the CC BY
clips "Vibe Ace" and "Solo trumpet 06" of ``../shared/data/audio``, or ``--music``, cut into
29.1 s excerpts at the rate each section names):

(a) training crops per second from the cache, with 0, 1, 2 ... loader workers, against
    ``librosa.load`` of the file at the model's rate plus a random crop (what most public
    GTZAN/MTAT code does per item), for WAV at its native 22.05 kHz and for MTAT-style mp3
    resampled to 16 kHz; and against a bare memory-mapped crop (the floor of any loader);
(b) training samples per second per architecture: fp32 against bf16-mixed, with and without
    ``channels_last`` and ``torch.compile``;
(c) the share of each training step spent waiting for data, in a real Lightning ``fit``;
(d) cache build clips per second against ``librosa.load``, per core and with all cores;
(e) the front-ends against librosa (NumPy/soxr on the CPU) with the same settings.

    python -m benchmarks.perf [--device cpu|cuda] [--architectures resnet_gru resnet_vit] [--quick]

The figures of the machines it ran on are in ``benchmarks/PERF.md``.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from benchmarks.cell import cpu_name
from benchmarks.decode_throughput import time_cache, time_librosa, usable_cores
from datamodules.cache import AudioCache
from datamodules.folder import FolderDataModule
from datamodules.items import Item
from datamodules.primitives.audio import decode_audio
from datamodules.windows import CropDataset

#: Real music beside the repository (never in it); ``--music`` points elsewhere.
SHARED_AUDIO = Path(__file__).resolve().parents[2] / "shared" / "data" / "audio"
RECORDINGS = ("Kevin_MacLeod_-_Vibe_Ace.ogg", "sorohanro_-_solo-trumpet-06.ogg")
REAL_MUSIC: list[Path] = []  # set by main() from --music
CROP_SECONDS = 3.0


# ---- set-up -------------------------------------------------------------------------------
def machine(device: str) -> str:
    text = f"{cpu_name()}, {usable_cores()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads)"
    if device == "cuda":
        text += f"; GPU: {torch.cuda.get_device_name(0)}"
    return text


def write_excerpts(folder: Path, rate: int, fmt: str, count: int, seconds: float = 29.1) -> list[Path]:
    """``count`` excerpts of real music, ``seconds`` long, at ``rate``, as ``fmt`` (wav or mp3), in one
    class folder per source recording (so :class:`FolderDataModule` can read them)."""
    files = []
    for source in REAL_MUSIC:
        y = decode_audio(source, rate)
        y = np.tile(y, int(np.ceil(seconds * rate * 4 / len(y))))  # long enough for shifted excerpts
        (folder / source.stem).mkdir(parents=True, exist_ok=True)
        for i in range(count // len(REAL_MUSIC)):
            start = (i * 7919 * rate // 1000) % (len(y) - int(seconds * rate))
            path = folder / source.stem / f"{i:04d}.{fmt}"
            sf.write(path, y[start:start + int(seconds * rate)], rate, format=fmt.upper())
            files.append(path)
    return files


def best_of(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def table(title: str, header: list[str], rows: list[list]) -> None:
    print(f"\n{title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|")
    for row in rows:
        print("| " + " | ".join(str(v) for v in row) + " |")


# ---- (a) the training loader ----------------------------------------------------------------
class ItemByItem(torch.utils.data.Dataset):
    """The crop dataset fetched one crop at a time and collated by PyTorch (the loader before
    batched fetching), for the before/after row."""

    def __init__(self, dataset: CropDataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> dict:
        return self.dataset[i]


def crops_per_second(files: list[Path], rate: int, workers: list[int], cache_dir: Path, batches: int) -> dict:
    import librosa

    from datamodules.windows import collate_batch

    cache = AudioCache([Item(str(f), str(f), 0) for f in files], sample_rate=rate, cache_dir=cache_dir)
    cache.ensure()
    clips = cache.load()
    n = int(CROP_SECONDS * rate)
    dataset = CropDataset(cache.audio_file, clips, n)
    results = {}

    def loader_rate(loader) -> float:
        iterator = iter(loader)
        next(iterator)  # workers started, memory map opened
        count, t0 = 0, time.perf_counter()
        while count < batches * 16:
            try:
                count += len(next(iterator)["target"])
            except StopIteration:
                iterator = iter(loader)
        return count / (time.perf_counter() - t0)

    for w in workers:
        results[f"musiczoo cache, {w} worker{'s' if w != 1 else ''}"] = loader_rate(torch.utils.data.DataLoader(
            dataset, batch_size=16, shuffle=True, num_workers=w, persistent_workers=w > 0, collate_fn=collate_batch))
    results["musiczoo cache item by item (before), 0 workers"] = loader_rate(
        torch.utils.data.DataLoader(ItemByItem(dataset), batch_size=16, shuffle=True))

    audio = np.memmap(cache.audio_file, dtype=np.float16, mode="r")
    rng = np.random.default_rng(0)

    def bare():
        for _ in range(2000):
            clip = clips[rng.integers(len(clips))]
            start = clip.offset + int(rng.integers(max(clip.length - n, 0) + 1))
            np.asarray(audio[start:start + n], dtype=np.float32)
    results["bare memory-mapped crop (floor)"] = 2000 / best_of(bare)

    def per_item_librosa():
        for f in files[:24]:
            y, _ = librosa.load(f, sr=rate, mono=True)
            start = rng.integers(max(len(y) - n, 0) + 1)
            y[start:start + n].copy()
    librosa.load(files[0], sr=rate)  # lazy imports and resampler set-up are not per-item cost
    results["librosa.load + random crop"] = 24 / best_of(per_item_librosa, 2)
    return results


def loader_throughput(tmp: Path, workers: list[int], batches: int, count: int) -> None:
    rows = []
    for label, rate, fmt, target in (("WAV 22.05 kHz -> 22.05 kHz", 22050, "wav", 22050),
                                     ("mp3 22.05 kHz -> 16 kHz (resampled)", 22050, "mp3", 16000)):
        files = write_excerpts(tmp / f"a_{fmt}", rate, fmt, count)
        results = crops_per_second(files, target, workers, tmp / "cache", batches)
        base = results["librosa.load + random crop"]
        floor = results["bare memory-mapped crop (floor)"]
        for name, value in results.items():
            rows.append([label, name, f"{value:,.0f}", f"{value / base:.1f}x", f"{value / floor:.2f}"])
    table(f"(a) training crops of {CROP_SECONDS:g} s per second (batch 16)",
          ["audio", "loader", "crops/s", "vs librosa", "vs bare crop"], rows)


# ---- (b) training steps ------------------------------------------------------------------------
def samples_per_second(architecture: str, device: str, precision: str, channels_last: bool, compiled: bool,
                       batch: int, steps: int, rate: int = 16000) -> float:
    from zoo.factory import create_model

    torch.manual_seed(0)
    model = create_model(architecture, transform="mel", num_classes=50, sample_rate=rate).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    step_model = torch.compile(model) if compiled else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    audio = torch.randn(batch, int(CROP_SECONDS * rate), device=device)
    target = torch.randint(0, 2, (batch, 50), device=device).float()
    dtype = torch.bfloat16 if precision == "bf16-mixed" else None

    def step():
        with torch.autocast(device_type=device, dtype=dtype, enabled=dtype is not None):
            loss = torch.nn.functional.binary_cross_entropy_with_logits(step_model(audio).float(), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(3):  # warm-up (and compilation)
        step()
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    return batch * steps / (time.perf_counter() - t0)


def training_speed(architectures: list[str], device: str, batch: int, steps: int, compile_too: bool) -> None:
    rows = []
    variants = [("32-true", False, False), ("32-true", True, False), ("bf16-mixed", False, False),
                ("bf16-mixed", True, False)]
    if compile_too:
        variants.append(("bf16-mixed", True, True))
    for architecture in architectures:
        base = None
        for precision, channels_last, compiled in variants:
            value = samples_per_second(architecture, device, precision, channels_last, compiled, batch, steps)
            base = base or value
            rows.append([architecture, precision, "yes" if channels_last else "no", "yes" if compiled else "no",
                         f"{value:,.1f}", f"{value / base:.2f}x"])
    table(f"(b) training samples/s, {CROP_SECONDS:g} s at 16 kHz, log-Mel, batch {batch}, {device}",
          ["architecture", "precision", "channels_last", "torch.compile", "samples/s", "vs fp32"], rows)


# ---- (c) waiting for data -----------------------------------------------------------------------
def data_wait_fraction(folder: Path, architecture: str, device: str, workers: int, cache_dir: Path,
                       steps: int, precision: str) -> tuple[float, float]:
    """(share of the training time spent waiting for the next batch, samples/s) in a real ``fit``."""
    import lightning as L

    from zoo.task import MusicTask

    class Timer(L.Callback):
        def __init__(self):
            self.wait = self.total = 0.0
            self.samples = 0
            self._end = None

        # Steady state: a step is from the end of the previous batch to the end of this one, within
        # an epoch; the first batch of each epoch (iterator and worker start-up) is left out.
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self._start = time.perf_counter()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if device == "cuda":
                torch.cuda.synchronize()
            now = time.perf_counter()
            if batch_idx > 0 and trainer.global_step > 2:
                self.wait += self._start - self._end
                self.total += now - self._end
                self.samples += len(batch["target"])
            self._end = now

    data = FolderDataModule(root=str(folder), sample_rate=16000, chunk_seconds=CROP_SECONDS, batch_size=16,
                            num_workers=workers, cache_dir=str(cache_dir), val_fraction=0.0, test_fraction=0.1)
    task = MusicTask(architecture=architecture, transform="mel", num_classes=len(REAL_MUSIC), sample_rate=16000,
                     chunk_seconds=CROP_SECONDS)
    timer = Timer()
    trainer = L.Trainer(accelerator=device if device == "cuda" else "cpu", devices=1, precision=precision,
                        max_steps=steps, limit_val_batches=0, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[timer])
    trainer.fit(task, datamodule=data)
    return timer.wait / max(timer.total, 1e-9), timer.samples / max(timer.total, 1e-9)


def data_wait(tmp: Path, architectures: list[str], device: str, workers: list[int], steps: int, count: int) -> None:
    folder = tmp / "c_wav"
    write_excerpts(folder, 22050, "wav", 4 * count)
    precision = "bf16-mixed" if device == "cuda" else "32-true"
    rows = []
    for architecture in architectures:
        for w in workers:
            wait, speed = data_wait_fraction(folder, architecture, device, w, tmp / "cache", steps, precision)
            rows.append([architecture, w, precision, f"{speed:,.1f}", f"{100 * wait:.1f} %"])
    table(f"(c) share of each training step spent waiting for data (real fit, batch 16, {device})",
          ["architecture", "loader workers", "precision", "samples/s", "waiting for data"], rows)


# ---- (d) cache build ---------------------------------------------------------------------------
def cache_build_speed(tmp: Path, count: int) -> None:
    cores = usable_cores()
    rows = []
    for label, rate, fmt, target in (("mp3 16 kHz -> 16 kHz (MTAT)", 16000, "mp3", 16000),
                                     ("mp3 22.05 kHz -> 16 kHz", 22050, "mp3", 16000),
                                     ("WAV 22.05 kHz -> 22.05 kHz (GTZAN)", 22050, "wav", 22050)):
        files = write_excerpts(tmp / f"d_{fmt}_{rate}", rate, fmt, count)
        for f in files:
            f.read_bytes()  # a warm page cache for both
        time_librosa(files[:1], target)
        base = min(time_librosa(files, target) for _ in range(2))
        rows.append([label, "librosa.load, 1 process", f"{len(files) / base:.1f}", 1, "1.00x"])
        for workers in sorted({1, cores}):
            seconds = min(time_cache(files, target, workers, tmp) for _ in range(2))
            per_core = len(files) / seconds / min(workers, cores)
            rows.append([label, f"cache build, {workers} worker{'s' if workers > 1 else ''}",
                         f"{len(files) / seconds:.1f}", min(workers, cores), f"{per_core / (len(files) / base):.2f}x"])
    table("(d) cache build: 29.1 s clips per second", ["audio", "decoder", "clips/s", "cores", "per core vs librosa"], rows)


# ---- (e) front-ends ------------------------------------------------------------------------------
def frontend_speed(device: str, batch: int = 16, seconds: float = 30.0) -> None:
    import librosa

    from zoo.frontends import create_frontend

    y = decode_audio(REAL_MUSIC[0], 22050)
    n = int(seconds * 22050)
    y = np.tile(y, int(np.ceil(2 * n / len(y))))
    clips = np.stack([y[s:s + n] for s in np.linspace(0, len(y) - n, batch).astype(int)])
    x = torch.from_numpy(clips).to(device)
    settings = {"n_fft": 2048, "hop_length": 512}
    reference = {  # the same settings and the same dB step (power, ref 1, amin 1e-10, top_db 80) on both sides
        "mel": lambda a: librosa.power_to_db(librosa.feature.melspectrogram(y=a, sr=22050, n_mels=128, **settings), top_db=80),
        "mfcc": lambda a: librosa.feature.mfcc(y=a, sr=22050, n_mfcc=20, n_mels=128, **settings),
        "stft": lambda a: librosa.power_to_db(np.abs(librosa.stft(a, **settings)) ** 2, top_db=80),
    }
    rows = []
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    for name, ref in reference.items():
        frontend = create_frontend(name, sample_rate=22050, **settings).to(device)
        with torch.no_grad():
            frontend(x[:2])
            sync()

            def ours():
                frontend(x)
                sync()
            t_ours = best_of(ours)
        t_ref = best_of(lambda: [ref(a) for a in clips])
        rows.append([name, f"{t_ref:.3f}", f"{t_ours:.3f}", f"{t_ref / t_ours:.1f}x", f"{batch * seconds / t_ours:,.0f}x"])
    table(f"(e) front-ends: {batch} x {seconds:g} s of real music at 22.05 kHz, n_fft 2048, hop 512, {device}",
          ["transform", "librosa (s)", "musiczoo (s)", "speed-up", "musiczoo x realtime"], rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--music", type=Path, default=SHARED_AUDIO, help=f"folder holding {' and '.join(RECORDINGS)}")
    parser.add_argument("--architectures", nargs="+", default=["resnet_gru", "resnet_vit"])
    parser.add_argument("--workers", type=int, nargs="+", default=None, help="loader workers (default 0 1 2 .. cores)")
    parser.add_argument("--sections", default="abcde")
    parser.add_argument("--clips", type=int, default=128, help="29.1 s excerpts per audio type (d: cache build)")
    parser.add_argument("--quick", action="store_true", help="fewer clips and steps (a smoke run)")
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile in (b)")
    args = parser.parse_args(argv)
    missing = [name for name in RECORDINGS if not (args.music / name).is_file()]
    if missing:
        parser.error(f"no {', '.join(missing)} in {args.music}: pass --music DIR holding the real recordings")
    REAL_MUSIC[:] = [args.music / name for name in RECORDINGS]
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("lightning").setLevel(logging.WARNING)
    cores = usable_cores()
    workers = args.workers or sorted({0, 1, 2, min(cores, 8)})
    count = 8 if args.quick else 32
    print(f"# musiczoo perf: {machine(args.device)}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if "a" in args.sections:
            loader_throughput(tmp, workers, batches=10 if args.quick else 100, count=count)
        if "b" in args.sections:
            batch = 64 if args.device == "cuda" else 16
            training_speed(args.architectures, args.device, batch, steps=3 if args.quick else 10, compile_too=not args.no_compile)
        if "c" in args.sections:
            data_wait(tmp, args.architectures, args.device, sorted({0, max(workers)}), steps=10 if args.quick else 24,
                      count=count)
        if "d" in args.sections:
            cache_build_speed(tmp, 8 if args.quick else args.clips)
        if "e" in args.sections:
            frontend_speed(args.device)


if __name__ == "__main__":
    main()
