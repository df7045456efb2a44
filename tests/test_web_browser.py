"""The listening room in a real browser: a real library, a real server, a headless Chromium.

A small synthetic library (20 clips of 2 s) is indexed through the real CLI with a tiny CRNN of
random weights, served by uvicorn on a free local port in a background thread, and driven with
Playwright as a researcher would: search, select a track, hear it, read its predictions,
timeline and picture, like tracks and ask for recommendations, drop in outside audio (a real
WAV, then a text file named .wav). A full-page screenshot is left in
``test-artifacts/listening_room.png`` for a human to look at.

Skipped when Chromium (``/usr/bin/chromium``; Playwright's own browsers are not used) or
Playwright is not installed.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(f"browser test needs Chromium at {CHROMIUM} (not installed)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="browser test needs Playwright")
uvicorn = pytest.importorskip("uvicorn", reason="browser test needs uvicorn")
expect = sync_api.expect

from datamodules.synthetic import make_synthetic_gtzan  # noqa: E402
from zoo.cli import main  # noqa: E402
from zoo.factory import create_model  # noqa: E402
from zoo.hub import save_pretrained  # noqa: E402
from zoo.recommend.library import Library  # noqa: E402
from zoo.web.app import create_app  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SCREENSHOT = REPO / "test-artifacts" / "listening_room.png"
GENRES = ["blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock"]
TIMEOUT_MS = 15_000


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> Path:
    """20 synthetic clips (2 s, 16 kHz) indexed with a tiny random CRNN through ``musiczoo index``."""
    tmp = tmp_path_factory.mktemp("web")
    torch.manual_seed(0)
    net = create_model("crnn", num_classes=10, sample_rate=8000, channels=[8, 16, 16, 16],
                       transform_params={"n_fft": 256, "hop_length": 128, "n_mels": 32})
    model = save_pretrained(net.eval(), tmp / "model", label_names=GENRES, chunk_seconds=1.0)
    music = make_synthetic_gtzan(tmp / "music", seconds=2.0, sample_rate=16000, clips_per_genre=2)
    out = tmp / "library"
    main(["index", str(model), str(music), "--out", str(out), "--max-chunks", "2"])
    return out


@pytest.fixture(scope="module")
def server(library):
    """The app on a free 127.0.0.1 port, served from a background thread; yields its base URL."""
    yield from serve(library)


def serve(library: Path):
    """Serve ``library`` on a free 127.0.0.1 port from a background thread; yields its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(library), log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:  # explicit wait for uvicorn's own "started" flag
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        yield browser
        browser.close()


@pytest.fixture()
def page(browser, server):
    """A fresh page on the listening room; fails the test on any script error or alert()."""
    with open_page(browser, server) as page:
        yield page


@contextlib.contextmanager
def open_page(browser, url: str):
    """A fresh page on ``url``; fails the test on any script error or alert()."""
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(f"script error: {error}"))
    page.on("dialog", lambda dialog: (errors.append(f"dialog: {dialog.message}"), dialog.dismiss()))
    page.goto(url + "/")
    yield page
    context.close()
    assert not errors, errors


def wav_file(path: Path, seconds: float = 2.0, rate: int = 16000) -> Path:
    """A chord with a little noise: real audio, not in the library."""
    t = np.arange(int(seconds * rate)) / rate
    y = sum(0.2 * np.sin(2 * np.pi * f * t) for f in (220.0, 277.2, 329.6))
    y = y + 0.02 * np.random.default_rng(0).standard_normal(t.size)
    sf.write(path, y.astype(np.float32), rate)
    return path


def match_ns(page, selector: str = "#similar .match") -> list[int]:
    return [int(n) for n in page.locator(selector).evaluate_all("rows => rows.map(r => r.dataset.n)")]


def wait_for_track_views(page, n: int) -> None:
    """The selected track's bars, timeline, picture and similar list are all on the page."""
    expect(page.locator("#bars .bar")).to_have_count(10)  # one model of 10 genres: all ten shown
    expect(page.locator("#timeline .segment").first).to_be_visible()
    page.wait_for_function(
        """n => { const img = document.querySelector('#spectrogram');
                  return img.src.includes(`/api/tracks/${n}/spectrogram.png`) && img.complete && img.naturalWidth > 0; }""",
        arg=n)
    expect(page.locator('#similar[data-query="track"] .match').first).to_be_visible()


def test_a_listening_session(page, library, tmp_path):
    started = time.monotonic()
    lib = Library.open(library)
    # -- the library: 20 tracks listed with their top labels; the search narrows the list
    expect(page.locator("#library-info")).to_contain_text("20 tracks")
    tracks = page.locator("#track-list .track")
    expect(tracks).to_have_count(20)
    expect(tracks.first.locator(".chip").first).to_be_visible()
    expect(page.locator("#more")).to_be_hidden()  # everything fits in the first page
    page.fill("#search", "metal.00001")
    expect(tracks).to_have_count(1)
    expect(tracks.first).to_contain_text("metal.00001.wav")
    page.fill("#search", "")
    expect(tracks).to_have_count(20)

    # -- select a track: player, bars, timeline, picture, similar tracks
    tracks.nth(2).click()
    n = int(tracks.nth(2).get_attribute("data-n"))
    expect(tracks.nth(2)).to_have_class("track selected")
    expect(page.locator("#track-title")).to_have_text(tracks.nth(2).locator(".track-name").inner_text())
    wait_for_track_views(page, n)
    values = [float(v) for v in page.locator("#bars .bar-value").all_inner_texts()]
    assert values == sorted(values, reverse=True) and sum(values) == pytest.approx(1, abs=0.01)  # softmax, highest first
    stored = sorted(lib.arrays["model0.probabilities"][n].tolist(), reverse=True)
    assert values == pytest.approx(stored, abs=1e-3)  # shown with 3 decimals
    segments = page.locator("#timeline .segment")
    assert segments.count() >= 1 and "\n" in segments.first.get_attribute("title")  # tooltip: time range + probabilities
    assert segments.count() == 2  # 2 s in 1 s chunks
    expect(page.locator("#similar-heading")).to_have_text(f"Similar to {page.locator('#track-title').inner_text()}")
    expect(page.locator("#similar .match")).to_have_count(10)  # k = 10 by default
    assert n not in match_ns(page)
    assert match_ns(page) == [lib.row[m.id] for m in lib.similar(n, k=10)]  # combined features by default

    # -- the audio element loads the track (loadedmetadata fired: readyState >= HAVE_METADATA)
    player = page.locator("#player")
    assert player.get_attribute("src").endswith(f"/api/tracks/{n}/audio")
    page.wait_for_function("() => { const a = document.querySelector('#player'); return a.readyState >= 1 || a.error; }")
    duration = player.evaluate("a => a.error ? -a.error.code : a.duration")
    assert duration == pytest.approx(2.0, abs=0.05)

    # -- controls: k and the feature are sent with the query
    page.fill("#k", "5")
    page.locator("#k").dispatch_event("change")
    expect(page.locator("#similar .match")).to_have_count(5)
    page.select_option("#feature", "embedding")
    expect(page.locator("#similar-status")).to_contain_text("embedding")
    page.check("#diversify")
    expect(page.locator("#lambda")).to_be_enabled()
    expect(page.locator("#similar-status")).to_contain_text("λ 0.70")

    # -- like two of the similar tracks, then ask for recommendations for the liked set
    liked = match_ns(page)[:2]
    for i in range(2):
        page.locator("#similar .match .like-button").nth(i).click()
    expect(page.locator("#liked .liked-track")).to_have_count(2)
    expect(page.locator("#similar .match .like-button[aria-pressed=true]")).to_have_count(2)
    page.click("#recommend-liked")
    expect(page.locator("#similar-heading")).to_have_text("Recommended for 2 liked tracks")
    expect(page.locator('#similar[data-query="liked"] .match')).to_have_count(5)
    assert not set(liked) & set(match_ns(page))  # liked tracks are never recommended back
    # what the controls say is what was asked: 5 tracks, embedding features, diversified with lambda 0.7
    assert match_ns(page) == [lib.row[m.id] for m in lib.like(liked, k=5, feature="embedding", diversify=0.7)]

    # -- outside audio: a real WAV gets predictions and its nearest library tracks
    page.set_input_files("#upload-input", str(wav_file(tmp_path / "chord.wav")))
    expect(page.locator("#upload-result")).to_be_visible()
    expect(page.locator("#upload-title")).to_contain_text("chord.wav")
    expect(page.locator("#upload-result .bar").first).to_be_visible()
    expect(page.locator("#upload-matches .match")).to_have_count(5)

    # -- a text file named .wav: the server's 400 is a message on the page, and the page goes on
    (tmp_path / "notes.wav").write_text("these are my notes, not audio\n")
    page.set_input_files("#upload-input", str(tmp_path / "notes.wav"))
    expect(page.locator("#message")).to_be_visible()
    expect(page.locator("#message")).to_contain_text("notes.wav: cannot read audio")
    expect(page.locator("#upload-matches .match")).to_have_count(5)  # the earlier answer is still there
    other = tracks.nth(7)
    other.click()
    other_n = int(other.get_attribute("data-n"))
    expect(page.locator("#track-title")).to_have_text(other.locator(".track-name").inner_text())
    wait_for_track_views(page, other_n)
    expect(page.locator("#similar-heading")).to_contain_text("Similar to")

    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    assert SCREENSHOT.stat().st_size > 10_000
    assert time.monotonic() - started < 60


@pytest.fixture(scope="module")
def mood_server(library, tmp_path_factory):
    """The same music indexed with the genre model and an emotion model (valence and arousal on
    1-9, random weights), served."""
    tmp = tmp_path_factory.mktemp("mood")
    torch.manual_seed(1)
    net = create_model("fcn", num_classes=2, sample_rate=8000, task="regression", label_names=["valence", "arousal"],
                       target_scale=(1.0, 9.0), channels=[8] * 5, transform_params={"n_fft": 256, "hop_length": 128})
    emotion = save_pretrained(net.eval(), tmp / "emotion", chunk_seconds=1.0)
    music = Library.open(library).music_dir
    main(["index", str(library / "models" / "0"), str(emotion), str(music), "--out", str(tmp / "library"), "--max-chunks", "2"])
    yield from serve(tmp / "library")


def test_an_emotion_model_shows_its_two_values_and_finds_the_same_mood(browser, mood_server):
    with open_page(browser, mood_server) as page:
        check_the_mood_page(page)


def check_the_mood_page(page) -> None:
    expect(page.locator("#library-info")).to_contain_text("fcn/mel (regression)")
    assert "mood" in page.locator("#feature option").all_inner_texts()
    page.locator("#track-list .track").nth(3).click()
    emotion = page.locator("#bars .model-block").nth(1)
    expect(emotion.locator(".bar")).to_have_count(2)
    assert emotion.locator(".bar-label").all_inner_texts() == ["valence", "arousal"]  # the model's order
    for text in emotion.locator(".bar-value").all_inner_texts():
        value, scale = text.split(" of ")
        assert scale == "1-9" and 1.0 <= float(value) <= 9.0, text
    chips = page.locator("#track-list .track").nth(3).locator(".chip").all_inner_texts()
    assert chips and not any(c.startswith(("valence", "arousal")) for c in chips)  # chips are the genre model's labels
    page.select_option("#feature", "mood")
    expect(page.locator("#similar-status")).to_contain_text("mood")
    expect(page.locator("#similar .match").first).to_be_visible()
    page.select_option("#model-select", "1")  # the timeline of the emotion model: its values per chunk
    expect(page.locator("#timeline .segment").first).to_contain_text("valence")
    assert " · arousal " in page.locator("#timeline .segment").first.inner_text()


@pytest.fixture(scope="module")
def versions_server(library, tmp_path_factory):
    """The same music indexed with the genre model and a version identification model (fcn on a
    CQT, random weights, 5 training works), served; yields its base URL and the library."""
    from zoo.build import build_model
    from zoo.spec import ModelSpec

    tmp = tmp_path_factory.mktemp("versions")
    torch.manual_seed(2)
    works = [f"W_{i:04d}" for i in range(5)]
    net = build_model(ModelSpec(architecture="fcn", transform="cqt", num_classes=5, task="versions", label_names=works,
                                sample_rate=8000, chunk_seconds=1.0, model_params={"channels": [8] * 5}))
    versions = save_pretrained(net.eval(), tmp / "versions")
    music = Library.open(library).music_dir
    main(["index", str(library / "models" / "0"), str(versions), str(music), "--out", str(tmp / "library"), "--max-chunks", "2"])
    for url in serve(tmp / "library"):
        yield url, tmp / "library"


def test_other_versions_are_listed_playable_and_clickable(browser, versions_server, server):
    url, path = versions_server
    lib = Library.open(path)
    with open_page(browser, server) as page:  # a library without a version model: no such list
        page.locator("#track-list .track").nth(1).click()
        expect(page.locator('#similar[data-query="track"] .match').first).to_be_visible()
        expect(page.locator("#versions-panel")).to_be_hidden()
        assert "versions" not in page.locator("#feature option").all_inner_texts()
    with open_page(browser, url) as page:
        # the kind of music stays the default (waited for: the options come from the library's API)
        expect(page.locator("#feature")).to_have_value("combined")
        assert "versions" in page.locator("#feature option").all_inner_texts()
        tracks = page.locator("#track-list .track")
        expect(tracks).to_have_count(20)
        assert not [c for c in tracks.locator(".chip").all_inner_texts() if c.startswith("W_")]  # genres only
        tracks.nth(4).click()
        n = int(tracks.nth(4).get_attribute("data-n"))
        expect(page.locator("#versions-panel")).to_be_visible()
        expect(page.locator("#versions-heading")).to_have_text(f"Other versions of {tracks.nth(4).locator('.track-name').inner_text()}")
        expect(page.locator(f'#versions[data-track="{n}"] .match')).to_have_count(10)  # k = 10 by default
        assert match_ns(page, "#versions .match") == [lib.row[m.id] for m in lib.versions(n, k=10)]
        assert match_ns(page, "#similar .match") == [lib.row[m.id] for m in lib.similar(n, k=10)]  # still combined
        first = match_ns(page, "#versions .match")[0]
        # playable: each match has its own player on the track's audio
        player = page.locator("#versions .match audio").first
        assert player.get_attribute("src").endswith(f"/api/tracks/{first}/audio")
        # k applies to both lists
        page.fill("#k", "3")
        page.locator("#k").dispatch_event("change")
        expect(page.locator("#versions .match")).to_have_count(3)
        # clickable: opening a version shows its own versions
        page.locator("#versions .match .match-name").first.click()
        expect(page.locator(f'#versions[data-track="{first}"] .match')).to_have_count(3)
        expect(page.locator("#track-meta")).to_contain_text(f"#{first}")
        assert match_ns(page, "#versions .match") == [lib.row[m.id] for m in lib.versions(first, k=3)]
