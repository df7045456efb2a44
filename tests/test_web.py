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
    assert info == {"tracks": 20, "music_folder": "genres_original", "features": ["embedding", "probabilities", "combined"],
                    "models": [{"name": "crnn/mel", "task": "multiclass", "labels": GENRES}]}
    listed = client.get("/api/tracks", params={"limit": 5}).json()
    assert listed["total"] == 20 and [t["n"] for t in listed["tracks"]] == [0, 1, 2, 3, 4]
    jazz = client.get("/api/tracks", params={"q": "jazz.0000"}).json()
    assert [t["name"] for t in jazz["tracks"]] == ["jazz.00000.wav", "jazz.00001.wav"]
    detail = client.get("/api/tracks/3").json()
    probabilities = detail["predictions"][0]["probabilities"]
    assert list(probabilities) == sorted(probabilities, key=probabilities.get, reverse=True)
    lib = Library.open(library)
    assert probabilities[GENRES[0]] == pytest.approx(float(lib.arrays["model0.probabilities"][3][0]), abs=1e-4)
    stored = lib.arrays["model0.probabilities"][3].tolist()
    assert detail["predictions"] == [{"model": "crnn/mel", "task": "multiclass", "probabilities": {
        GENRES[j]: round(stored[j], 4) for j in sorted(range(10), key=lambda j: -stored[j])}}]
    assert {k: detail[k] for k in ("n", "id", "name")} == {"n": 3, "id": lib.tracks[3].id, "name": Path(lib.tracks[3].id).name}


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
    # 2 s at 8 kHz with a hop of 128 samples: 126 frames of 32 Mel bands, stretched to the smallest
    # picture (400 x 128)
    assert image.size == (400, 128)


def nearest_by_hand(lib: Library, query: np.ndarray, feature: str, exclude: set[int], k: int) -> list[int]:
    """The ``k`` rows most similar to ``query`` apart from ``exclude``, by a plain dot product."""
    vectors = lib.vectors(feature)
    return sorted((r for r in range(len(lib.tracks)) if r not in exclude), key=lambda r: -float(query @ vectors[r]))[:k]


def test_similar_and_liked(client, library):
    lib = Library.open(library)
    similar = client.get("/api/tracks/4/similar", params={"k": 5, "feature": "embedding"}).json()
    assert len(similar["matches"]) == 5 and 4 not in [m["n"] for m in similar["matches"]]
    assert [m["n"] for m in similar["matches"]] == nearest_by_hand(lib, lib.vectors("embedding")[4], "embedding", {4}, 5)
    assert [m["id"] for m in similar["matches"]] == [lib.tracks[m["n"]].id for m in similar["matches"]]
    assert [m["similarity"] for m in similar["matches"]] == pytest.approx(
        [float(lib.vectors("embedding")[4] @ lib.vectors("embedding")[m["n"]]) for m in similar["matches"]], abs=1e-5)
    assert all(m["path"] is None for m in similar["matches"])  # no server paths are handed out
    diverse = client.get("/api/tracks/4/similar", params={"k": 5, "feature": "embedding", "diversify": 0.2}).json()
    assert [m["n"] for m in diverse["matches"]] != [m["n"] for m in similar["matches"]]
    assert [m["n"] for m in diverse["matches"]] == [
        lib.row[m.id] for m in lib.similar(4, k=5, feature="embedding", diversify=0.2)]
    liked = client.post("/api/like", json={"tracks": [4, 9], "k": 5}).json()
    assert len(liked["matches"]) == 5 and not {4, 9} & {m["n"] for m in liked["matches"]}
    profile = lib.vectors("combined")[[4, 9]].mean(axis=0)
    assert [m["n"] for m in liked["matches"]] == nearest_by_hand(lib, profile / np.linalg.norm(profile), "combined",
                                                                 {4, 9}, 5)


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
    # The same samples losslessly re-encoded: the labels are the stored track's top five.
    assert list(result["labels"].items()) == [(name, pytest.approx(p, abs=1e-4)) for name, p in lib.tracks[7].labels[0].items()]
    assert len(Library.open(library).tracks) == 20  # nothing added


@pytest.mark.parametrize("url, status", [
    ("/api/tracks/../../secret.txt/audio", 404),  # the client resolves the dots: /secret.txt/audio
    ("/api/tracks/..%2F..%2Fsecret.txt/audio", 404),  # %2F is a slash to the router: no route has these parts
    ("/api/tracks/%2Fetc%2Fpasswd/audio", 404),
    ("/static/../../secret.txt", 404),
    ("/static/..%2F..%2F..%2Fsecret.txt", 404),
    ("/api/tracks/999/audio", 404),
    ("/api/tracks/-1/audio", 404),
])
def test_no_path_from_the_client_is_ever_opened(client, url, status):
    answer = client.get(url)
    assert 400 <= answer.status_code < 500 and "not for the web" not in answer.text
    assert answer.status_code == status
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
        assert answer.json() == {"detail": "track 0 resolves outside the music folder"}
    finally:
        victim.unlink()
        victim.write_bytes(saved)


def test_bad_uploads_get_4xx_and_the_server_keeps_serving(client, tmp_path):
    huge = client.post("/api/upload", files={"file": ("big.wav", b"\0" * (MAX_UPLOAD + 1))})
    assert huge.status_code == 413 and "too large" in huge.json()["detail"]
    assert huge.json() == {"detail": "upload too large: at most 2 MiB"}
    bogus = client.post("/api/upload", files={"file": ("song.wav", b"this is text, not audio" * 100)})
    assert bogus.status_code == 400 and "song.wav: cannot read audio" in bogus.json()["detail"]
    assert bogus.json() == {"detail": "song.wav: cannot read audio (not an audio file, or damaged)"}
    long = io.BytesIO()
    sf.write(long, np.zeros(8000 * 61, np.float32), 8000, format="FLAC")  # 61 s of silence: small, but too long
    too_long = client.post("/api/upload", files={"file": ("long.flac", long.getvalue())})
    assert too_long.status_code == 400 and "longer than" in too_long.json()["detail"]
    assert too_long.json() == {"detail": "long.flac: 1.0 minutes is longer than the 1 allowed"}  # 61 s of at most 60
    assert client.get("/api/tracks/1/similar", params={"feature": "nope"}).status_code == 422
    assert client.get("/api/tracks/1/similar", params={"feature": "nope"}).json() == {
        "detail": "feature must be one of embedding, probabilities, combined"}
    assert still_serving(client)
    leftovers = [p for p in Path(__import__("tempfile").gettempdir()).glob("musiczoo-upload-*")]
    assert leftovers == []  # every upload's temporary folder is removed


def test_musiczoo_serve_binds_to_loopback_and_warns_otherwise(library):
    from zoo.web.app import exposure_warning

    assert exposure_warning("127.0.0.1") is None and exposure_warning("::1") is None and exposure_warning("localhost") is None
    assert "anyone who can reach this machine" in exposure_warning("0.0.0.0")
    for host in ("0.0.0.0", "192.168.1.20", "music-box.local"):
        assert exposure_warning(host) == (f"warning: serving on {host}: anyone who can reach this machine "
                                          f"can list and play the library's files")
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
