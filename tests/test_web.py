"""The listening room's server: a real uvicorn on a free loopback port, real HTTP requests.

What a browser needs (ranges for seeking, JSON answers, the model's input picture) and what
an attacker would try (paths out of the library, huge or bogus uploads) are checked here;
the page itself is driven by a real Chromium in ``test_web_browser.py``.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import os
import select
import shutil
import socket
import subprocess
import sys
import tempfile
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
from zoo.web.guard import MULTIPART_SLACK

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


@contextlib.contextmanager
def serving(app):
    """``app`` on a free 127.0.0.1 port, in a thread of this process; yields its base URL."""
    port = free_port()
    instance = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not instance.started and time.time() < deadline:
        time.sleep(0.05)
    assert instance.started, "the server did not start"
    yield f"http://127.0.0.1:{port}"
    instance.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def server(library):
    """The app on a free 127.0.0.1 port, in a thread of this process; yields its base URL."""
    with serving(create_app(library, max_upload_bytes=MAX_UPLOAD, max_upload_seconds=60)) as url:
        yield url


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
                    "models": [{"name": "crnn/mel", "task": "multiclass", "labels": GENRES, "scale": None}]}
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
    assert detail["predictions"] == [{"model": "crnn/mel", "task": "multiclass", "scale": None, "probabilities": {
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
        assert httpx.get(f"http://127.0.0.1:{port}/api/library", headers={"Host": "evil.example"}).status_code == 400
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_serving_a_broken_library_is_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "zoo.cli", "serve", str(tmp_path)], capture_output=True, text=True,
                          timeout=120, cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode != 0 and "not a musiczoo library" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


# ---- who may call, and how much they may send (docs/listening-room.md, "Safe by default") ----------

ROUTES = ["/", "/static/app.js", "/api/library", "/api/tracks", "/api/tracks/0", "/api/tracks/0/audio",
          "/api/tracks/0/similar", "/api/nothing-here"]


def status_with_host(base: str, path: str, host: str | None, method: str = "GET", body: bytes = b"") -> int:
    """The status of a request carrying exactly this ``Host`` header (None: no Host header at all)."""
    conn = http.client.HTTPConnection(*base.removeprefix("http://").split(":"), timeout=30)
    conn.putrequest(method, path, skip_host=True)
    if host is not None:
        conn.putheader("Host", host)
    if body:
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(len(body)))
    conn.endheaders(body)
    with contextlib.closing(conn):
        return conn.getresponse().status


@pytest.mark.parametrize("host", ["evil.example", "evil.example:{port}", "127.0.0.1.evil.example", "localhost.evil.example:{port}",
                                  "0.0.0.0:{port}", "192.168.1.20:{port}", "[::1]evil", "127.0.0.1:{port}@evil.example",
                                  "localhost:http", "", None])
def test_a_host_that_is_not_this_servers_gets_400_on_every_route(server, host):
    """DNS rebinding: a page on evil.example re-pointed at 127.0.0.1 must not read the library."""
    port = server.rsplit(":", 1)[1]
    host = host.format(port=port) if host is not None else None
    assert {path: status_with_host(server, path, host) for path in ROUTES} == {path: 400 for path in ROUTES}
    assert status_with_host(server, "/api/like", host, "POST", b'{"tracks": [1]}') == 400
    answer = httpx.get(server + "/api/tracks", headers={"Host": "evil.example"})
    assert answer.json() == {"detail": "Host 'evil.example' is not this server's name: open it as "
                                       "http://127.0.0.1:PORT/ or http://localhost:PORT/ (or serve with --host)"}


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.1:{port}", "localhost", "LocalHost:{port}", "[::1]", "[::1]:{port}"])
def test_the_loopback_names_are_answered(server, host):
    host = host.format(port=server.rsplit(":", 1)[1])
    assert {path: status_with_host(server, path, host) for path in ROUTES[:-1]} == {path: 200 for path in ROUTES[:-1]}


def test_the_host_given_to_serve_widens_the_check(library):
    with serving(create_app(library, host="music-box.local")) as url:
        assert status_with_host(url, "/api/library", "music-box.local:8765") == 200
        assert status_with_host(url, "/api/library", "localhost") == 200
        assert status_with_host(url, "/api/library", "192.168.1.20") == 400  # only the name it was given
        assert status_with_host(url, "/api/library", "evil.example") == 400
    with serving(create_app(library, host="0.0.0.0")) as url:  # every interface: any address, still no other name
        for host in ("0.0.0.0:8765", "192.168.1.20:8765", "[fe80::1]:8765", "localhost"):
            assert status_with_host(url, "/api/library", host) == 200, host
        for host in ("evil.example", "music-box.local:8765"):
            assert status_with_host(url, "/api/library", host) == 400, host


def test_musiczoo_serve_host_is_the_name_it_answers_to(library):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "zoo.cli", "serve", str(library), "--host", "127.0.0.2", "--port",
                             str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parents[1])
    try:
        assert proc.stdout.readline().strip() == f"listening room for {library}: http://127.0.0.2:{port}/"
        deadline = time.time() + 60
        while True:
            try:
                assert httpx.get(f"http://127.0.0.2:{port}/api/library", timeout=5).status_code == 200
                break
            except httpx.TransportError:
                assert time.time() < deadline, "musiczoo serve did not answer"
                time.sleep(0.2)
        assert status_with_host(f"http://127.0.0.2:{port}", "/api/library", "localhost") == 200
        assert status_with_host(f"http://127.0.0.2:{port}", "/api/library", "evil.example") == 400
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_state_changing_requests_from_other_sites_get_403(client, server):
    port = server.rsplit(":", 1)[1]
    like = {"tracks": [4], "k": 2}
    for headers in ({"Origin": "http://evil.example"}, {"Origin": "null"}, {"Origin": f"http://127.0.0.1:{free_port()}"},
                    {"Origin": f"https://127.0.0.1:{port}"}, {"Origin": f"http://localhost:{port}"},  # Host is 127.0.0.1
                    {"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"},
                    {"Origin": server, "Sec-Fetch-Site": "cross-site"}):
        assert client.post("/api/like", json=like, headers=headers).status_code == 403, headers
        assert client.post("/api/upload", files={"file": ("a.wav", b"RIFF")}, headers=headers).status_code == 403, headers
        assert client.put("/api/like", json=like, headers=headers).status_code == 403, headers
        assert client.delete("/api/tracks/0", headers=headers).status_code == 403, headers
    refused = client.post("/api/like", json=like, headers={"Origin": "http://evil.example"})
    assert refused.json() == {"detail": "cross-site POST refused: from http://evil.example, not from this server's own page"}
    # The page itself (same origin), and scripts that name no origin, are answered.
    assert client.post("/api/like", json=like, headers={"Origin": server, "Sec-Fetch-Site": "same-origin"}).status_code == 200
    assert client.post("/api/like", json=like).status_code == 200
    with httpx.Client(base_url=f"http://localhost:{port}") as by_name:
        assert by_name.post("/api/like", json=like, headers={"Origin": f"http://localhost:{port}"}).status_code == 200
    assert client.get("/api/tracks/4/similar", headers={"Origin": "http://evil.example"}).status_code == 200  # reads change nothing
    too_big = client.post("/api/like", content=b"[" + b"1," * 2**19 + b"1]", headers={"Content-Type": "application/json"})
    assert too_big.status_code == 413 and too_big.json() == {"detail": "request body too large: at most 1024 KiB"}


class MeasuredSpool(tempfile.SpooledTemporaryFile):
    """The multipart parser's real spool file, recording how large it is on disk after each write.

    Sizes are taken at every write (``os.fstat`` once the file has rolled over from memory to
    disk), not sampled by a watcher, so the peak is exact however loaded the machine is.
    """

    created = 0  # spool files the parser opened
    peak = 0  # the most bytes one of them held on disk

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        MeasuredSpool.created += 1

    def write(self, data):
        written = super().write(data)
        if self._rolled:  # on disk now: measure the real file
            MeasuredSpool.peak = max(MeasuredSpool.peak, os.fstat(self._file.fileno()).st_size)
        return written


@contextlib.contextmanager
def measured_spool():
    """Uploads spooled through :class:`MeasuredSpool` while in the block; yields the class."""
    import starlette.formparsers

    MeasuredSpool.created = MeasuredSpool.peak = 0
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(starlette.formparsers, "SpooledTemporaryFile", MeasuredSpool)
        yield MeasuredSpool


def upload_over_a_socket(base: str, total: int, *, chunked: bool) -> tuple[int, dict]:
    """POST a ``total``-byte file to /api/upload, 1 MiB at a time, stopping when the server answers."""
    boundary = "zoo-boundary"
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.wav"\r\n'
            f"Content-Type: audio/wav\r\n\r\n").encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    conn = http.client.HTTPConnection(*base.removeprefix("http://").split(":"), timeout=60)
    conn.putrequest("POST", "/api/upload")
    conn.putheader("Content-Type", f"multipart/form-data; boundary={boundary}")
    if chunked:
        conn.putheader("Transfer-Encoding", "chunked")
    else:
        conn.putheader("Content-Length", str(len(head) + total + len(tail)))
    conn.endheaders()
    blocks = [head, *[b"\0" * 2**20] * (total // 2**20), tail]
    with contextlib.closing(conn), contextlib.suppress(BrokenPipeError, ConnectionResetError):
        for block in blocks:
            if select.select([conn.sock], [], [], 0)[0]:
                break  # answered already
            conn.send(f"{len(block):X}\r\n".encode() + block + b"\r\n" if chunked else block)
        else:
            if chunked:
                conn.send(b"0\r\n\r\n")
        answer = conn.getresponse()
        return answer.status, __import__("json").loads(answer.read())


def test_an_oversized_upload_stops_at_the_limit_before_reaching_disk(server, client, tmp_path, monkeypatch):
    """32 MiB against a 2 MiB limit: refused by Content-Length before a byte is read; chunked, cut at the limit."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the server spools uploads
    with measured_spool() as declared:
        answer = upload_over_a_socket(server, 16 * MAX_UPLOAD, chunked=False)
    assert answer == (413, {"detail": "upload too large: at most 2 MiB"})
    assert (declared.created, declared.peak) == (0, 0)  # refused before the parser opened a spool
    with measured_spool() as streamed:
        answer = upload_over_a_socket(server, 16 * MAX_UPLOAD, chunked=True)
    assert answer == (413, {"detail": "upload too large: at most 2 MiB"})
    # Spooled to disk past 1 MiB (the parser's memory limit), never past the limit and its multipart slack.
    assert streamed.created == 1
    assert 2**20 < streamed.peak <= MAX_UPLOAD + MULTIPART_SLACK


@pytest.fixture(scope="module")
def odd_server(library, tmp_path_factory):
    """A library whose music has a file name that is not UTF-8 (byte 0xff), as Linux allows; its base URL."""
    tmp = tmp_path_factory.mktemp("odd")
    lib = Library.open(library)
    music = tmp / "music" / "blues"
    music.mkdir(parents=True)
    for name, track in ((b"caf\xff.wav", lib.tracks[0]), (b"plain.wav", lib.tracks[1])):
        shutil.copyfile(lib.path_of(track), os.fsencode(music) + b"/" + name)
    main(["index", str(library.parent / "model"), str(tmp / "music"), "--out", str(tmp / "library"), "--max-chunks", "2"])
    with serving(create_app(tmp / "library")) as url:
        yield url, tmp


def test_a_file_name_that_is_not_utf8_is_listed_escaped_and_still_plays(odd_server):
    url, tmp = odd_server
    with httpx.Client(base_url=url, timeout=60) as client:
        listed = client.get("/api/tracks")
        assert listed.status_code == 200, listed.text
        by_name = {t["name"]: t for t in listed.json()["tracks"]}
        assert sorted(by_name) == ["caf\\xff.wav", "plain.wav"]  # the byte 0xff shown as the four characters \xff
        odd = by_name["caf\\xff.wav"]
        assert odd["id"] == "blues/caf\\xff.wav"
        assert client.get("/api/tracks", params={"q": "caf"}).json()["tracks"] == [odd]
        assert client.get(f"/api/tracks/{odd['n']}").json()["name"] == "caf\\xff.wav"
        audio = client.get(f"/api/tracks/{odd['n']}/audio")
        assert audio.status_code == 200
        assert audio.content == Path(os.fsdecode(os.fsencode(tmp / "music" / "blues") + b"/caf\xff.wav")).read_bytes()
        similar = client.get(f"/api/tracks/{by_name['plain.wav']['n']}/similar", params={"k": 1}).json()["matches"]
        assert [(m["n"], m["id"]) for m in similar] == [(odd["n"], "blues/caf\\xff.wav")]
        liked = client.post("/api/like", json={"tracks": [by_name["plain.wav"]["n"]], "k": 1}).json()["matches"]
        assert [m["id"] for m in liked] == ["blues/caf\\xff.wav"]


@pytest.mark.parametrize("body, status, detail", [
    (b'{"tracks": [1e400]}', 422, "tracks.0: Input should be a finite number"),
    (b'{"tracks": [-1e400]}', 422, "tracks.0: Input should be a finite number"),
    (b'{"tracks": [NaN]}', 422, "tracks.0: Input should be a finite number"),
    (b'{"tracks": [1], "k": Infinity}', 422, "k: Input should be a finite number"),
    (b'{"tracks": [1], "diversify": 1e400}', 422, "diversify must be between 0 and 1"),
    (b'{"tracks": [1], "diversify": NaN}', 422, "diversify must be between 0 and 1"),
    (b'{"tracks": [1e30]}', 422, "tracks.0: Unable to parse input string as an integer, exceeded maximum size"),
    (b'{"tracks": [1e15]}', 404, "no track 1000000000000000 (the library has 20)"),
    (b'{"tracks": [' + b"9" * 5000 + b']}', 400, "There was an error parsing the body"),  # past Python's int digits
    (b'{"tracks": "all"}', 422, "tracks: Input should be a valid list"),
    (b'{}', 422, "tracks: Field required"),
])
def test_non_finite_or_out_of_range_numbers_in_a_json_body_are_a_readable_4xx(client, body, status, detail):
    answer = client.post("/api/like", content=body, headers={"Content-Type": "application/json"})
    assert (answer.status_code, answer.json()) == (status, {"detail": detail})
    assert still_serving(client)


# ---- other versions (a library with a version identification model) ---------------------------------
@pytest.fixture(scope="module")
def versions_server(library, tmp_path_factory):
    """The same music indexed with the genre model and a version model (fcn on a CQT, random
    weights, 5 training works), served; yields its base URL and the library."""
    from zoo.build import build_model
    from zoo.spec import ModelSpec

    tmp = tmp_path_factory.mktemp("versions")
    torch.manual_seed(2)
    works = [f"W_{i:04d}" for i in range(5)]
    net = build_model(ModelSpec(architecture="fcn", transform="cqt", num_classes=5, task="versions", label_names=works,
                                sample_rate=8000, chunk_seconds=1.0, model_params={"channels": [8] * 5}))
    versions = save_pretrained(net.eval(), tmp / "versions")
    main(["index", str(library / "models" / "0"), str(versions), str(Library.open(library).music_dir),
          "--out", str(tmp / "library"), "--max-chunks", "2"])
    with serving(create_app(tmp / "library")) as url:
        yield url, tmp / "library"


def test_other_versions_of_a_track(versions_server, client, library):
    url, path = versions_server
    lib = Library.open(path)
    with httpx.Client(base_url=url, timeout=60) as versions_client:
        info = versions_client.get("/api/library").json()
        assert info["features"] == ["embedding", "probabilities", "combined", "versions"]
        assert [m["task"] for m in info["models"]] == ["multiclass", "versions"]
        answer = versions_client.get("/api/tracks/6/versions", params={"k": 4})
        assert answer.status_code == 200, answer.text
        matches = answer.json()["matches"]
        assert [m["n"] for m in matches] == nearest_by_hand(lib, lib.vectors("versions")[6], "versions", {6}, 4)
        assert [m["n"] for m in matches] == [lib.row[m.id] for m in lib.versions(6, k=4)]
        assert [m["similarity"] for m in matches] == pytest.approx([m.similarity for m in lib.versions(6, k=4)], abs=1e-6)
        assert all(m["path"] is None for m in matches) and 6 not in [m["n"] for m in matches]
        assert not [name for m in matches for name in [*m["shared"], *m["labels"]] if name.startswith("W_")]
        assert len(versions_client.get("/api/tracks/6/versions").json()["matches"]) == 10  # k 10 unless told
        # the similar list stays the kind of music: combined by default, the version model left out
        similar = versions_client.get("/api/tracks/6/similar", params={"k": 4}).json()["matches"]
        assert [m["n"] for m in similar] == [lib.row[m.id] for m in lib.similar(6, k=4, feature="combined")]
        genre_only = Library.open(library)  # the same music and genre model, without the version model
        np.testing.assert_allclose(lib.vectors("combined"), genre_only.vectors("combined"), atol=1e-5)
        # a track's chips are the genre model's labels, never the version model's training works
        listed = versions_client.get("/api/tracks", params={"limit": 20}).json()["tracks"]
        assert listed and all(set(t["labels"]) <= set(GENRES) for t in listed)
        # bad requests: one line each, and the server keeps serving
        for params, status, detail in [({"k": 0}, 422, "k must be between 1 and 100"),
                                       ({"k": 101}, 422, "k must be between 1 and 100")]:
            refused = versions_client.get("/api/tracks/6/versions", params=params)
            assert (refused.status_code, refused.json()) == (status, {"detail": detail})
        assert versions_client.get("/api/tracks/999/versions").status_code == 404
        assert versions_client.get("/api/tracks/-1/versions").status_code == 404
        assert status_with_host(url, "/api/tracks/6/versions", "evil.example") == 400  # the guard comes first
        assert status_with_host(url, "/api/tracks/6/versions", "localhost") == 200
    # a library without a version model has no versions to give: a 404 naming its models
    missing = client.get("/api/tracks/6/versions")
    assert (missing.status_code, missing.json()) == (404, {"detail": "no versions: the library has no version "
                                                                     "identification model (its models are multiclass)"})
    assert client.get("/api/tracks/6/similar", params={"feature": "versions"}).status_code == 422
