"""How fast the listening room answers: page load and similar-tracks latency, 1,000 and 10,000 tracks.

For each size a library is written in the real format from synthetic vectors with
``Library.from_vectors`` (a tiny random CRNN as its model, 512-d clustered embeddings and
10 genre probabilities per track, every track a hard link to one short WAV so the files
exist), served by uvicorn on a loopback port, and measured in one run:

* page load over HTTP: the page, its script and style sheet, ``/api/library`` and the first
  page of ``/api/tracks`` (what the page fetches before it shows anything), p50 of 20 loads;
* page load in headless Chromium (when installed): navigation until the track list shows;
* similar tracks over HTTP (``/api/tracks/{n}/similar?k=10``, combined features), p50/p99 of
  200 random tracks, against the baseline of the same query in process (``Library.similar``),
  so the ratio is the cost of HTTP and JSON.

    python benchmarks/web_latency.py [--sizes 1000,10000]
"""

from __future__ import annotations

import argparse
import os
import socket
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import uvicorn

from datamodules.gtzan import GENRES
from zoo.factory import create_model, from_pretrained
from zoo.hub import save_pretrained
from zoo.recommend.library import Library, Track
from zoo.web.app import create_app

CHROMIUM = Path("/usr/bin/chromium")


def synthetic_library(root: Path, size: int, seed: int = 0) -> Path:
    """A library of ``size`` tracks in the real format, with clustered random vectors."""
    torch.manual_seed(seed)
    net = create_model("crnn", num_classes=10, sample_rate=8000, channels=[8, 16, 16, 16])
    model = from_pretrained(save_pretrained(net.eval(), root / "model", label_names=GENRES, chunk_seconds=1.0))
    music = root / "music"
    music.mkdir()
    sf.write(music / "source.wav", np.zeros(8000, np.float32), 8000)
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((50, 512)).astype(np.float32)
    which = rng.integers(50, size=size)
    embedding = centres[which] + rng.standard_normal((size, 512)).astype(np.float32)
    probabilities = rng.dirichlet(np.ones(10) * 0.3, size=size).astype(np.float32)
    tracks = []
    for i in range(size):
        name = f"{GENRES[which[i] % 10]}/track{i:06d}.wav"
        (music / name).parent.mkdir(exist_ok=True)
        os.link(music / "source.wav", music / name)
        st = (music / name).stat()
        labels = {GENRES[j]: float(probabilities[i, j]) for j in np.argsort(-probabilities[i])[:5]}
        tracks.append(Track(name, st.st_size, st.st_mtime_ns, "0" * 64, 1.0, [labels]))
    arrays = {"model0.embedding": embedding, "model0.probabilities": probabilities,
              "fingerprint": rng.standard_normal((size, 1152)).astype(np.float32)}
    return Library.from_vectors(root / "library", [model], music, tracks, arrays, max_chunks=1).root


def serve_in_thread(library: Path) -> tuple[uvicorn.Server, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(library), host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.02)
    return server, f"http://127.0.0.1:{port}"


def timed(fn, repeats: int) -> np.ndarray:
    seconds = []
    for i in range(repeats):
        start = time.perf_counter()
        fn(i)
        seconds.append(time.perf_counter() - start)
    return np.array(seconds)


def browser_load_ms(url: str) -> float | None:
    if not CHROMIUM.exists():
        return None
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM))
        page = browser.new_page()
        loads = []
        for _ in range(5):
            start = time.perf_counter()
            page.goto(url)
            page.wait_for_selector("#track-list .track")
            loads.append(time.perf_counter() - start)
        browser.close()
    return float(np.median(loads) * 1e3)


def main(argv: list[str] | None = None) -> None:
    import httpx

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000")
    args = parser.parse_args(argv)
    print(f"machine: {os.cpu_count()} cores, torch threads {torch.get_num_threads()}; similar = top-10, combined features")
    print(f"{'tracks':>7} {'page HTTP p50':>14} {'page Chromium':>14} {'similar p50':>12} {'similar p99':>12} "
          f"{'in-process p50':>15} {'HTTP / in-process':>18}")
    for size in [int(s) for s in args.sizes.split(",")]:
        with tempfile.TemporaryDirectory() as tmp:
            library_path = synthetic_library(Path(tmp), size)
            server, url = serve_in_thread(library_path)
            rng = np.random.default_rng(1)
            picks = rng.integers(size, size=200)
            with httpx.Client(base_url=url, timeout=60) as client:
                def load_page(_):
                    for path in ("/", "/static/app.js", "/static/app.css", "/api/library", "/api/tracks?limit=200"):
                        client.get(path).raise_for_status()

                load_page(0)  # warm
                page = timed(load_page, 20)
                client.get(f"/api/tracks/{picks[0]}/similar").raise_for_status()
                http = timed(lambda i: client.get(f"/api/tracks/{picks[i]}/similar", params={"k": 10}).raise_for_status(), 200)
            library = Library.open(library_path)
            library.similar(int(picks[0]))
            direct = timed(lambda i: library.similar(int(picks[i]), k=10), 200)
            chromium = browser_load_ms(url)
            server.should_exit = True
            print(f"{size:>7,} {np.median(page) * 1e3:>11.1f} ms {('%.1f ms' % chromium) if chromium else 'n/a':>14} "
                  f"{np.median(http) * 1e3:>9.2f} ms {np.percentile(http, 99) * 1e3:>9.2f} ms "
                  f"{np.median(direct) * 1e3:>12.2f} ms {np.median(http) / np.median(direct):>17.1f}x", flush=True)


if __name__ == "__main__":
    main()
