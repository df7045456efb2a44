"""The listening room's server: a real uvicorn on a free loopback port, real HTTP requests.

What a browser needs (ranges for seeking, JSON answers, the model's input picture) and what
an attacker would try (paths out of the library, huge or bogus uploads) are checked here;
the page itself is driven by a real Chromium in ``test_web_browser.py``.
"""

from __future__ import annotations

import io
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf
import torch
import uvicorn
from PIL import Image

from datamodules.synthetic import make_synthetic_gtzan
from zoo.cli import main
from zoo.factory import create_model
from zoo.hub import save_pretrained
from zoo.recommend.library import Library
from zoo.web.app import create_app

GENRES = ["blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock"]
MAX_UPLOAD = 2 * 2**20


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("web")
    music = make_synthetic_gtzan(tmp / "data", seconds=2.0, sample_rate=16000, clips_per_genre=2)
    torch.manual_seed(0)
    model = create_model("crnn", num_classes=10, sample_rate=8000, channels=[8, 16, 16, 16],
                         transform_params={"n_fft": 256, "hop_length": 128, "n_mels": 32})
    folder = save_pretrained(model.eval(), tmp / "model", label_names=GENRES, chunk_seconds=1.0)
    (tmp / "secret.txt").write_text("not for the web")
    main(["index", str(folder), str(music), "--out", str(tmp / "library"), "--max-chunks", "2"])
    return tmp / "library"


@pytest.fixture(scope="module")
def server(library):
    """The app on a free 127.0.0.1 port, in a thread of this process; yields its base URL."""
    port = free_port()
    config = uvicorn.Config(create_app(library, max_upload_bytes=MAX_UPLOAD, max_upload_seconds=60),
                            host="127.0.0.1", port=port, log_level="warning")
    instance = uvicorn.Server(config)
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not instance.started and time.time() < deadline:
        time.sleep(0.05)
    assert instance.started, "the server did not start"
    yield f"http://127.0.0.1:{port}"
    instance.should_exit = True
    thread.join(timeout=10)


@pytest.fixture()
def client(server):
    with httpx.Client(base_url=server, timeout=60) as c:
        yield c


def still_serving(client) -> bool:
    return client.get("/api/library").status_code == 200


def test_page_and_assets_are_served_locally(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "http://" not in page.text and "https://" not in page.text  # no CDN: works offline
    for asset in ("/static/app.js", "/static/app.css"):
        assert client.get(asset).status_code == 200


def test_track_list_details_and_search(client, library):
    info = client.get("/api/library").json()
    assert info["tracks"] == 20 and info["models"][0]["name"] == "crnn/mel" and info["features"][-1] == "combined"
    listed = client.get("/api/tracks", params={"limit": 5}).json()
    assert listed["total"] == 20 and [t["n"] for t in listed["tracks"]] == [0, 1, 2, 3, 4]
    jazz = client.get("/api/tracks", params={"q": "jazz.0000"}).json()
    assert [t["name"] for t in jazz["tracks"]] == ["jazz.00000.wav", "jazz.00001.wav"]
    detail = client.get("/api/tracks/3").json()
    probabilities = detail["predictions"][0]["probabilities"]
    assert list(probabilities) == sorted(probabilities, key=probabilities.get, reverse=True)
    lib = Library.open(library)
    assert probabilities[GENRES[0]] == pytest.approx(float(lib.arrays["model0.probabilities"][3][0]), abs=1e-4)


def test_audio_supports_ranges_so_seeking_works(client, library):
    path = Library.open(library).path_of(Library.open(library).tracks[2])
    whole = path.read_bytes()
    full = client.get("/api/tracks/2/audio")
    assert full.status_code == 200 and full.content == whole and full.headers["accept-ranges"] == "bytes"
    part = client.get("/api/tracks/2/audio", headers={"Range": "bytes=1000-1999"})
    assert part.status_code == 206 and part.content == whole[1000:2000]
    assert part.headers["content-range"] == f"bytes 1000-1999/{len(whole)}"


def test_segments_and_the_models_own_picture(client, library):
    segments = client.get("/api/tracks/0/segments").json()["segments"]
    assert [(s["start_s"], s["end_s"]) for s in segments] == [(0.0, 1.0), (1.0, 2.0)]  # 2 s in 1 s chunks
    png = client.get("/api/tracks/0/spectrogram.png")
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(png.content))
    assert image.width >= 400 and image.height >= 128


def test_similar_and_liked(client):
    similar = client.get("/api/tracks/4/similar", params={"k": 5, "feature": "embedding"}).json()
    assert len(similar["matches"]) == 5 and 4 not in [m["n"] for m in similar["matches"]]
    assert all(m["path"] is None for m in similar["matches"])  # no server paths are handed out
    diverse = client.get("/api/tracks/4/similar", params={"k": 5, "feature": "embedding", "diversify": 0.2}).json()
    assert [m["n"] for m in diverse["matches"]] != [m["n"] for m in similar["matches"]]
    liked = client.post("/api/like", json={"tracks": [4, 9], "k": 5}).json()
    assert len(liked["matches"]) == 5 and not {4, 9} & {m["n"] for m in liked["matches"]}


def test_upload_gives_predictions_and_nearest_tracks(client, library):
    lib = Library.open(library)
    y, sr = sf.read(lib.path_of(lib.tracks[7]), dtype="float32")
    buffer = io.BytesIO()
    sf.write(buffer, y, sr, format="FLAC")
    answer = client.post("/api/upload", files={"file": ("mine.flac", buffer.getvalue())}, params={"k": 3})
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert result["name"] == "mine.flac" and result["duration_s"] == pytest.approx(2.0)
    assert result["matches"][0]["n"] == 7 and len(result["labels"]) >= 1
    assert len(Library.open(library).tracks) == 20  # nothing added


@pytest.mark.parametrize("url", [
    "/api/tracks/../../secret.txt/audio",
    "/api/tracks/..%2F..%2Fsecret.txt/audio",
    "/api/tracks/%2Fetc%2Fpasswd/audio",
    "/static/../../secret.txt",
    "/static/..%2F..%2F..%2Fsecret.txt",
    "/api/tracks/999/audio",
    "/api/tracks/-1/audio",
])
def test_no_path_from_the_client_is_ever_opened(client, url):
    answer = client.get(url)
    assert 400 <= answer.status_code < 500 and "not for the web" not in answer.text
    assert still_serving(client)


def test_a_symlink_out_of_the_music_folder_is_refused(client, library, tmp_path):
    lib = Library.open(library)
    victim = lib.path_of(lib.tracks[0])
    saved = victim.read_bytes()
    outside = tmp_path / "outside.wav"
    outside.write_bytes(saved)
    victim.unlink()
    victim.symlink_to(outside)
    try:
        answer = client.get("/api/tracks/0/audio")
        assert answer.status_code == 403 and "outside the music folder" in answer.json()["detail"]
    finally:
        victim.unlink()
        victim.write_bytes(saved)


def test_bad_uploads_get_4xx_and_the_server_keeps_serving(client, tmp_path):
    huge = client.post("/api/upload", files={"file": ("big.wav", b"\0" * (MAX_UPLOAD + 1))})
    assert huge.status_code == 413 and "too large" in huge.json()["detail"]
    bogus = client.post("/api/upload", files={"file": ("song.wav", b"this is text, not audio" * 100)})
    assert bogus.status_code == 400 and "song.wav: cannot read audio" in bogus.json()["detail"]
    long = io.BytesIO()
    sf.write(long, np.zeros(8000 * 61, np.float32), 8000, format="FLAC")  # 61 s of silence: small, but too long
    too_long = client.post("/api/upload", files={"file": ("long.flac", long.getvalue())})
    assert too_long.status_code == 400 and "longer than" in too_long.json()["detail"]
    assert client.get("/api/tracks/1/similar", params={"feature": "nope"}).status_code == 422
    assert still_serving(client)
    leftovers = [p for p in Path(__import__("tempfile").gettempdir()).glob("musiczoo-upload-*")]
    assert leftovers == []  # every upload's temporary folder is removed


def test_musiczoo_serve_binds_to_loopback_and_warns_otherwise(library):
    from zoo.web.app import exposure_warning

    assert exposure_warning("127.0.0.1") is None and exposure_warning("::1") is None and exposure_warning("localhost") is None
    assert "anyone who can reach this machine" in exposure_warning("0.0.0.0")
    assert exposure_warning("music-box.local") is not None
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "zoo.cli", "serve", str(library), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[1])
    try:
        assert proc.stdout.readline().strip() == f"listening room for {library}: http://127.0.0.1:{port}/"
        deadline = time.time() + 60
        while True:
            try:
                assert httpx.get(f"http://127.0.0.1:{port}/api/library", timeout=5).json()["tracks"] == 20
                break
            except httpx.TransportError:
                assert time.time() < deadline, "musiczoo serve did not answer"
                time.sleep(0.2)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_serving_a_broken_library_is_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "zoo.cli", "serve", str(tmp_path)], capture_output=True, text=True,
                          timeout=120, cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode != 0 and "not a musiczoo library" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
