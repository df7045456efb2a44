"""The recommender end to end: index a music folder through the CLI, query it, grow it, break it.

A tiny CRNN with random weights is published and used as the "genre model": its vectors are
arbitrary, but a file and its re-encoded copy still get the same ones, and everything the
library promises (incremental runs, exclusions, diversification, duplicates, refusals,
interrupted runs) is checked on real files, a real FAISS index and the real command.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import shutil
import subprocess
import sys
import textwrap
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio

from datamodules.gtzan import split_list
from datamodules.synthetic import make_synthetic_gtzan
from zoo.cli import main
from zoo.factory import create_model, from_pretrained
from zoo.hub import save_pretrained
from zoo.recommend.index import normalize
from zoo.recommend.library import Library, LibraryError, Track, mmr, salient_labels
from zoo.recommend.store import model_digest
from zoo.recommend.tracks import TrackTable

SR = 8000
GENRES = ["blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock"]
REPO = Path(__file__).resolve().parents[1]


def tiny_model(tmp: Path, seed: int, sample_rate: int = SR) -> Path:
    torch.manual_seed(seed)
    model = create_model("crnn", num_classes=10, sample_rate=sample_rate, channels=[8, 16, 16, 16],
                         transform_params={"n_fft": 256, "hop_length": 128, "n_mels": 32})
    return save_pretrained(model.eval(), tmp / f"model-{seed}-{sample_rate}", label_names=GENRES, chunk_seconds=1.0)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("models")
    return tiny_model(tmp, 0), tiny_model(tmp, 1)


@pytest.fixture(scope="module")
def music(tmp_path_factory) -> Path:
    """30 synthetic GTZAN clips of 2 s, a corrupt file, and an OGG copy of one clip at a lower rate."""
    root = make_synthetic_gtzan(tmp_path_factory.mktemp("music"), seconds=2.0, sample_rate=16000, clips_per_genre=3)
    (root / "rock" / "broken.wav").write_bytes(b"RIFF not really a wav file")
    y, sr = sf.read(root / "jazz" / "jazz.00001.wav", dtype="float32")
    (root / "copies").mkdir()
    half_rate = torchaudio.functional.resample(torch.from_numpy(y), sr, sr // 2).numpy()
    sf.write(root / "copies" / "jazz-copy.ogg", half_rate, sr // 2)  # lossy, at half the rate
    return root


@pytest.fixture(scope="module")
def library(models, music, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("lib") / "library"
    main(["index", str(models[0]), str(models[1]), str(music), "--out", str(out), "--max-chunks", "4"])
    return out


def index_cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "zoo.cli", "index", *map(str, args)], capture_output=True,
                          text=True, timeout=300, cwd=REPO)


def recommend_cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "zoo.cli", "recommend", *map(str, args)], capture_output=True,
                          text=True, timeout=300, cwd=REPO)


def salient_by_hand(lib: Library, row: int) -> set[str]:
    """What the library's two genre models say a track is, worked out from its stored
    probabilities: each model's top genre, and its second when at least half as likely."""
    labels = set()
    for i in range(2):
        (p1, first), (p2, second) = sorted(zip(lib.arrays[f"model{i}.probabilities"][row].tolist(), GENRES),
                                           reverse=True)[:2]
        labels |= {first, second} if p2 >= p1 / 2 else {first}
    return labels


def brute_force_ranking(lib: Library, query: np.ndarray, feature: str, exclude: set[str]) -> list[str]:
    """Every other track of ``lib``, most similar to ``query`` first, by a plain dot product."""
    vectors = lib.vectors(feature)
    rows = [r for r in range(len(lib.tracks)) if lib.tracks[r].id not in exclude]
    return [lib.tracks[r].id for r in sorted(rows, key=lambda r: -float(query @ vectors[r]))]


# ---- indexing ----------------------------------------------------------------------------------
def test_index_writes_a_documented_library(library, music, models):
    manifest = json.loads((library / "library.json").read_text())
    assert manifest["complete"] and manifest["format"] == "musiczoo-library" and manifest["tracks"] == 31
    assert manifest["music_dir"] == str(music.resolve())
    assert [m["architecture"] for m in manifest["models"]] == ["crnn", "crnn"]
    assert manifest["models"][0]["model_digest"] != manifest["models"][1]["model_digest"]
    assert manifest["models"][0]["model_digest"] == model_digest(from_pretrained(models[0]))
    assert [s["id"] for s in manifest["skipped"]] == ["rock/broken.wav"]  # reported, not fatal
    data = library / manifest["data"]
    assert manifest["format_version"] == 3
    assert sorted(p.name for p in (data / "tracks").iterdir()) == ["ids.bin", "labels.bin", "records.bin", "table.json"]
    assert (data / "tracks" / "records.bin").stat().st_size == 31 * 72  # one fixed-width record a track
    tracks = [asdict(t) for t in TrackTable.open(data / "tracks")]
    assert [t["id"] for t in tracks] == sorted(t["id"] for t in tracks) and len(tracks) == 31
    first = tracks[0]
    assert set(first) == {"id", "size", "mtime_ns", "sha256", "duration_s", "labels"} and len(first["sha256"]) == 64
    assert (first["size"], first["mtime_ns"]) == ((music / first["id"]).stat().st_size, (music / first["id"]).stat().st_mtime_ns)
    assert first["sha256"] == hashlib.sha256((music / first["id"]).read_bytes()).hexdigest()
    assert first["duration_s"] == pytest.approx(2.0) and len(first["labels"]) == 2
    from safetensors.numpy import load_file

    arrays = load_file(str(data / "vectors.safetensors"))
    for i in range(2):  # each model's top 5 genres, most likely first, as its probabilities say
        probs = arrays[f"model{i}.probabilities"][0].tolist()
        top = sorted(range(10), key=lambda j: -probs[j])[:5]
        assert list(first["labels"][i].items()) == [(GENRES[j], pytest.approx(probs[j], abs=5e-5)) for j in top]
    assert arrays["model0.probabilities"].shape == (31, 10) and arrays["model0.embedding"].shape[0] == 31
    assert np.allclose(arrays["model1.probabilities"].sum(axis=1), 1, atol=1e-5)
    assert sorted(p.name for p in (data / "index").glob("*.faiss")) == [
        "combined.faiss", "embedding.faiss", "fingerprint.faiss", "probabilities.faiss"]
    assert (library / "models" / "0" / "model.safetensors").is_file() and not (library / "pending").exists()


def test_track_vectors_are_the_models_clip_level_outputs(library, music, models):
    """A track's probabilities are exactly what ``predict`` says for it with the same chunks."""
    from zoo.predict import predict_files

    lib = Library.open(library)
    row = lib.row["blues/blues.00000.wav"]
    (pred,) = predict_files(from_pretrained(models[0]), [music / "blues" / "blues.00000.wav"], top_k=0,
                            max_chunks=4, progress=False)
    np.testing.assert_allclose(lib.arrays["model0.probabilities"][row], [pred.labels[g] for g in GENRES], atol=1e-6)


def long_song(path: Path, seconds: float) -> Path:
    """A 44.1 kHz stereo MP3 of ``seconds``: the synthetic clips' kind of content, tones and noise."""
    rng = np.random.default_rng(3)
    t = np.arange(int(seconds * 44100)) / 44100
    left = 0.3 * np.sin(2 * np.pi * 220 * t * (1 + 0.1 * np.sin(t))) + 0.05 * rng.standard_normal(len(t))
    right = 0.2 * np.sign(np.sin(2 * np.pi * 3 * t)) * np.sin(2 * np.pi * 660 * t)
    sf.write(path, np.stack([left, right], axis=1).astype(np.float32), 44100, format="MP3")
    return path


def test_index_decodes_each_file_once_and_only_its_chunks(models, music, tmp_path, monkeypatch):
    """Two models at different rates and the fingerprint share one opening of each file, which
    reads only the frames the chunks need; the vectors are what ``predict_files`` (which decodes the
    whole file) gives, and the fingerprint is that of the whole track where its chunks cover it
    and of those excerpts of it where they do not."""
    from datamodules.primitives import audio
    from datamodules.primitives.audio import decode_audio, merged_spans
    from datamodules.primitives.chunks import chunk_starts
    from zoo.predict import predict_files
    from zoo.recommend import fingerprint as fp
    from zoo.recommend.embedding import embed_files
    from zoo.recommend.indexing import check_settings

    files = [music / "blues" / "blues.00000.wav", music / "copies" / "jazz-copy.ogg", long_song(tmp_path / "long.mp3", 60)]
    loaded = [from_pretrained(models[0]), from_pretrained(tiny_model(tmp_path, 2, sample_rate=16000))]
    opened, frames_read = [], []
    real_open, real_read = audio._open, audio.AudioStream._read_mono
    monkeypatch.setattr(audio, "_open", lambda source: opened.append(Path(source)) or real_open(source))
    monkeypatch.setattr(audio.AudioStream, "_read_mono",
                        lambda self, frames, position: frames_read.append(len(data := real_read(self, frames, position))) or data)
    results = embed_files(loaded, files, check_settings(2, 4, None), batch_size=4)
    assert [p.name for p in opened] == [p.name for p in files]  # once each, for both models and the fingerprint
    long_frames = sf.info(files[2]).frames
    assert sum(frames_read) < sum(sf.info(f).frames for f in files[:2]) + 0.15 * long_frames  # 4 s of its 60
    monkeypatch.undo()
    for path, (arrays, labels, error) in zip(files, results):
        assert error is None and len(labels) == 2
        for i, model in enumerate(loaded):
            (pred,) = predict_files(model, [path], top_k=0, embeddings=True, max_chunks=4, progress=False)
            np.testing.assert_allclose(arrays[f"model{i}.embedding"][0], pred.embedding, atol=1e-5)
            np.testing.assert_allclose(arrays[f"model{i}.probabilities"][0], [pred.labels[g] for g in GENRES], atol=1e-6)
    for path in files[:2]:  # 2 s clips: their four 1 s chunks cover them
        np.testing.assert_allclose(results[files.index(path)][0]["fingerprint"][0],
                                   fp.fingerprint(decode_audio(path, fp.SAMPLE_RATE)), atol=1e-5)
    # The long file: the 8 kHz stretches under both models' four 1 s chunks (the 16 kHz model's
    # halved, widened to whole samples), joined where they overlap.
    whole = decode_audio(files[2], fp.SAMPLE_RATE)
    at_16k = math.ceil(long_frames * 16000 / 44100)
    spans = merged_spans([(s, s + 8000) for s in chunk_starts(len(whole), 8000, 4)]
                         + [(s // 2, min(math.ceil((s + 16000) / 2), len(whole))) for s in chunk_starts(at_16k, 16000, 4)])
    assert len(spans) == 4
    np.testing.assert_allclose(results[2][0]["fingerprint"][0], fp.fingerprint([whole[a:b] for a, b in spans]), atol=1e-5)


def test_a_long_track_and_its_re_encoded_copy_keep_one_fingerprint(models, tmp_path):
    """Past its chunks' reach a track is fingerprinted from its excerpts; a copy (OGG at half the
    rate) has the same duration, so the same excerpts, and the fingerprints still agree, while a
    different song of the same kind does not come near (the duplicate threshold is 0.95)."""
    from zoo.recommend.embedding import read_track

    song = long_song(tmp_path / "song.mp3", 75)
    y, _ = sf.read(song, dtype="float32")
    sf.write(tmp_path / "copy.ogg", torchaudio.functional.resample(torch.from_numpy(y.T), 44100, 22050).numpy().T, 22050)
    sf.write(tmp_path / "other.mp3", np.roll(y, 44100 * 17, axis=0), 44100, format="MP3")  # other music at those times
    spec = from_pretrained(models[0]).spec
    song_fp, copy_fp, other_fp = (read_track(tmp_path / name, [spec], 8).fingerprint
                                  for name in ("song.mp3", "copy.ogg", "other.mp3"))
    assert float(song_fp @ copy_fp) > 0.99 and float(song_fp @ other_fp) < 0.9


def test_embedding_an_hour_long_track_takes_the_memory_of_a_minute_long_one(models, tmp_path):
    """Only the chunks' excerpts are decoded, so peak memory does not grow with the track: a
    1-hour 16 kHz WAV (115 MB; 230 MB decoded whole as float32) against a 1-minute one, each
    embedded in a fresh process by the library's model and fingerprint."""
    block = int(600 * 16000)
    for name, minutes in (("minute.wav", 1), ("hour.wav", 60)):
        with sf.SoundFile(tmp_path / name, "w", 16000, 1, subtype="PCM_16") as f:
            for start in range(0, minutes * 60 * 16000, block):
                t = np.arange(start, min(start + block, minutes * 60 * 16000)) / 16000
                f.write((0.3 * np.sin(2 * np.pi * 440 * t) * np.sin(2 * np.pi * 0.1 * t)).astype(np.float32))
    script = textwrap.dedent(f"""
        import resource, sys
        from pathlib import Path
        from zoo.factory import from_pretrained
        from zoo.recommend.embedding import embed_files
        from zoo.recommend.indexing import check_settings
        model = from_pretrained({str(models[0])!r})
        embed_files([model], [Path({str(tmp_path / 'minute.wav')!r})], check_settings(1, 16, None))  # warm
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        ((arrays, _, error),) = embed_files([model], [Path(sys.argv[1])], check_settings(1, 16, None))
        assert error is None and arrays["duration_s"] > 59, error
        print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base)
    """)
    grown = {name: int(subprocess.run([sys.executable, "-c", script, str(tmp_path / name)], capture_output=True, text=True,
                                      check=True, cwd=REPO, timeout=300).stdout.split()[-1]) / 1024
             for name in ("minute.wav", "hour.wav")}
    assert grown["hour.wav"] < grown["minute.wav"] + 20, grown  # MiB; a whole decode alone would add 230


def blues_library(models, music, tmp_path) -> tuple:
    """(model 0, the music folder, the manifest's path) of a library of the three blues clips, one chunk each."""
    folder = tmp_path / "music"
    shutil.copytree(music / "blues", folder / "blues")
    model = from_pretrained(models[0])
    Library.build([model], folder, tmp_path / "lib", max_chunks=1, progress=False)
    return model, folder, tmp_path / "lib" / "library.json"


def test_a_re_run_walks_the_folder_and_the_library_in_the_same_order(models, music, tmp_path):
    """The run merges the folder's walk with the library's tracks in id order, so names that sort
    differently as strings and as path components (``a-c/`` and ``a b.wav`` before ``a/``)
    must keep their tracks: nothing is embedded again, dropped or duplicated; a removal, a
    change and an addition among them are each seen once."""
    clips = sorted((music / "blues").glob("*.wav")) + sorted((music / "jazz").glob("*.wav"))
    folder = tmp_path / "music"
    names = ["a b.wav", "a-c/x.wav", "a/b.wav", "a/b/c.wav"]
    for name, clip in zip(names, clips):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(clip, folder / name)
    model = from_pretrained(models[0])
    first = Library.build([model], folder, tmp_path / "lib", max_chunks=1, progress=False)
    assert [t.id for t in first.tracks] == sorted(names)
    kept = {name: np.array(first.arrays["model0.embedding"][first.row[name]]) for name in ("a b.wav", "a/b/c.wav")}
    again = Library.build([model], folder, tmp_path / "lib", max_chunks=1, progress=False)
    assert again.manifest["last_run"] == {"embedded": 0, "unchanged": 4, "skipped": 0, "dropped": 0}
    (folder / "a-c" / "x.wav").unlink()
    shutil.copy(clips[5], folder / "a" / "b.wav")
    shutil.copy(clips[4], folder / "a" / "a.wav")
    changed = Library.build([model], folder, tmp_path / "lib", max_chunks=1, progress=False)
    assert changed.manifest["last_run"] == {"embedded": 2, "unchanged": 2, "skipped": 0, "dropped": 1}
    assert [t.id for t in changed.tracks] == ["a b.wav", "a/a.wav", "a/b.wav", "a/b/c.wav"]
    for name, row in kept.items():
        np.testing.assert_array_equal(changed.arrays["model0.embedding"][changed.row[name]], row)
    assert changed.tracks[changed.row["a/b.wav"]].sha256 == hashlib.sha256(clips[5].read_bytes()).hexdigest()


def test_a_library_fingerprinted_from_whole_tracks_is_embedded_again(models, music, tmp_path, caplog):
    """A library indexed before fingerprints came from the chunks (no ``fingerprint`` setting) still
    opens; the next index run embeds every track again, so old and new fingerprints never mix."""
    model, folder, path = blues_library(models, music, tmp_path)
    manifest = json.loads(path.read_text())
    del manifest["settings"]["fingerprint"]
    path.write_text(json.dumps(manifest))
    assert len(Library.open(tmp_path / "lib").tracks) == 3
    again = Library.build([model], folder, tmp_path / "lib", max_chunks=1, progress=False)
    assert again.manifest["last_run"] == {"embedded": 3, "unchanged": 0, "skipped": 0, "dropped": 0}
    assert "fingerprints were computed by an older musiczoo (whole-track)" in caplog.text
    assert json.loads(path.read_text())["settings"]["fingerprint"] == "chunk-excerpts"
    assert sorted(p.name for p in (tmp_path / "lib").iterdir()) == ["data-000001", "library.json", "models"]  # the old data went first
    third = Library.build([model], folder, tmp_path / "lib", max_chunks=1, progress=False)
    assert third.manifest["last_run"]["unchanged"] == 3


def test_incremental_runs_embed_only_what_changed(models, music, tmp_path):
    folder = tmp_path / "music"
    shutil.copytree(music, folder)
    out = tmp_path / "lib"
    first = index_cli(models[0], folder, "--out", out, "--max-chunks", "2")
    assert first.returncode == 0, first.stderr
    assert "31 tracks (31 embedded, 0 unchanged, 0 dropped, 1 unreadable skipped)" in first.stdout
    (folder / "blues" / "blues.00000.wav").unlink()
    shutil.copy(folder / "pop" / "pop.00002.wav", folder / "pop" / "new.wav")
    (folder / "jazz" / "jazz.00000.wav").touch()  # a new time but the same content: not embedded again
    again = index_cli(models[0], folder, "--out", out, "--max-chunks", "2")
    assert again.returncode == 0, again.stderr
    assert "31 tracks (1 embedded, 30 unchanged, 1 dropped, 1 unreadable skipped)" in again.stdout
    changed = folder / "rock" / "rock.00000.wav"
    y, sr = sf.read(changed, dtype="float32")
    sf.write(changed, y[::-1].copy(), sr)  # same size, new content: embedded again
    third = index_cli(models[0], folder, "--out", out, "--max-chunks", "2")
    assert "31 tracks (1 embedded, 30 unchanged, 0 dropped" in third.stdout
    lib = Library.open(out)
    assert "pop/new.wav" in lib.row and "blues/blues.00000.wav" not in lib.row
    # The new copy's vectors equal its source's: same audio, same model.
    np.testing.assert_allclose(lib.arrays["model0.embedding"][lib.row["pop/new.wav"]],
                               lib.arrays["model0.embedding"][lib.row["pop/pop.00002.wav"]], atol=1e-5)
    # A library made with other models or settings is refused, naming the difference.
    other = index_cli(models[1], folder, "--out", out, "--max-chunks", "2")
    assert other.returncode != 0 and "built with other models or settings" in other.stderr
    assert "model_digest" in other.stderr and len(other.stderr.strip().splitlines()) == 1
    settings = index_cli(models[0], folder, "--out", out, "--max-chunks", "3")
    assert "max_chunks 3 (library: 2)" in settings.stderr


def test_add_embeds_given_files(models, music, tmp_path):
    folder = tmp_path / "music"
    shutil.copytree(music, folder, ignore=shutil.ignore_patterns("broken.wav", "copies"))
    lib = Library.build([from_pretrained(models[0])], folder, tmp_path / "lib", max_chunks=2, progress=False,
                        files=sorted(folder.rglob("blues.*.wav")))
    assert len(lib.tracks) == 3
    grown = Library.open(tmp_path / "lib").add(sorted(folder.rglob("jazz.*.wav")), progress=False)
    assert len(grown.tracks) == 6 and len(Library.open(tmp_path / "lib").tracks) == 6
    with pytest.raises(LibraryError, match="not inside the library's music folder"):
        sf.write(tmp_path / "elsewhere.wav", np.zeros(8000, dtype=np.float32), 8000)
        grown.add([tmp_path / "elsewhere.wav"])


def test_a_model_with_another_sample_rate_is_refused(music, tmp_path, library):
    other = tiny_model(tmp_path, 0, sample_rate=16000)
    proc = index_cli(other, music, "--out", library)
    assert proc.returncode != 0 and "sample_rate 16000 (library: 8000)" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_model_digest_is_the_one_libraries_were_indexed_with():
    """A library records each model's digest and a re-run is refused when it differs, so the recipe
    (SHA-256 of the spec's build settings as sorted JSON, then each weight's name and bytes, in name
    order) must never change. The value below is what libraries indexed before were given for this
    model (its weights set by a formula, not drawn from the random generator)."""
    model = create_model("crnn", num_classes=3, sample_rate=SR, channels=[8, 16, 16, 16],
                         transform_params={"n_fft": 256, "hop_length": 128, "n_mels": 32}, label_names=["a", "b", "c"])
    with torch.no_grad():
        for i, tensor in enumerate(model.state_dict().values()):
            tensor.copy_((torch.arange(tensor.numel()).reshape(tensor.shape) + i) % 7)
    assert model_digest(model) == "6d743b0df0051af8d5f61b9aa9883fd7c39ff080b52b168dc2f6dd19ef9e2285"
    assert model_digest(model.eval()) == model_digest(model)  # the mode is not a weight
    with torch.no_grad():
        next(iter(model.parameters()))[0] += 1
    assert model_digest(model) != "6d743b0df0051af8d5f61b9aa9883fd7c39ff080b52b168dc2f6dd19ef9e2285"


def test_a_library_of_format_version_1_opens_and_is_reused(models, music, tmp_path):
    """Version 1 called the model digest ``fingerprint`` and, like version 2, kept the tracks in a
    ``tracks.json`` list (with no means file): such a library gives the same answers, and a
    re-run with the same model embeds nothing again, then writes this version's manifest and
    track table."""
    model, folder, path = blues_library(models, music, tmp_path)
    before = Library.open(tmp_path / "lib")
    answers = [(m.id, round(m.similarity, 5)) for m in before.similar("blues/blues.00001.wav", k=2)]
    records = [asdict(t) for t in before.tracks]
    manifest = json.loads(path.read_text())
    data = tmp_path / "lib" / manifest["data"]
    (data / "tracks.json").write_text(json.dumps(records))
    shutil.rmtree(data / "tracks")
    (data / "means.safetensors").unlink()
    digest = manifest["models"][0].pop("model_digest")
    manifest["models"][0]["fingerprint"] = digest
    path.write_text(json.dumps({**manifest, "format_version": 1}))
    old = Library.open(tmp_path / "lib")
    assert [asdict(t) for t in old.tracks] == records
    assert [(m.id, round(m.similarity, 5)) for m in old.similar("blues/blues.00001.wav", k=2)] == answers
    assert old.model_entries[0]["model_digest"] == digest and old.manifest["format_version"] == 3
    again = Library.build([model], folder, tmp_path / "lib", max_chunks=1, progress=False)
    assert again.manifest["last_run"] == {"embedded": 0, "unchanged": 3, "skipped": 0, "dropped": 0}
    written = json.loads(path.read_text())
    assert written["format_version"] == 3 and written["models"][0]["model_digest"] == digest
    assert "fingerprint" not in written["models"][0]
    assert (tmp_path / "lib" / written["data"] / "tracks" / "table.json").is_file()
    assert not (tmp_path / "lib" / written["data"] / "tracks.json").exists()
    assert [asdict(t) for t in again.tracks] == records
    path.write_text(json.dumps({**written, "format_version": 4}))
    with pytest.raises(LibraryError, match="not a musiczoo library of format version <= 3"):
        Library.open(tmp_path / "lib")


def test_a_library_from_vectors_you_already_have(models, music, tmp_path):
    """``Library.from_vectors`` writes the real format: the library opens, answers from the given
    vectors, and a later index run of the folder reuses its tracks."""
    model = from_pretrained(models[0])
    ids = ["rock/rock.00000.wav", "blues/blues.00000.wav", "jazz/jazz.00000.wav", "pop/pop.00000.wav"]
    tracks = [Track(i, (music / i).stat().st_size, (music / i).stat().st_mtime_ns,
                    hashlib.sha256((music / i).read_bytes()).hexdigest(), 2.0, [{"rock": 0.5}]) for i in ids]
    # Embeddings of mean zero in the first two dimensions, 0.5 added everywhere (the library's centring
    # removes it again): rock at 0 degrees, blues at 30, jazz at 100 and pop, minus their sum, at 221.3.
    angles = np.radians([0, 30, 100])
    embedding = np.zeros((4, model.embed_dim), np.float32)
    embedding[:3, 0], embedding[:3, 1] = np.cos(angles), np.sin(angles)
    embedding[3] = -embedding[:3].sum(axis=0)
    rng = np.random.default_rng(0)
    arrays = {"model0.embedding": embedding + 0.5, "model0.probabilities": rng.dirichlet(np.ones(10), 4),
              "fingerprint": rng.standard_normal((4, 1152))}
    built = Library.from_vectors(tmp_path / "lib", [model], music, tracks, arrays, max_chunks=2)
    lib = Library.open(tmp_path / "lib")
    assert [t.id for t in lib.tracks] == sorted(ids) and len(built.tracks) == 4
    assert lib.manifest["settings"] == {"max_chunks": 2, "weights": [1.0], "fingerprint": "chunk-excerpts"}
    assert lib.model_entries[0]["model_digest"] == model_digest(model)
    np.testing.assert_allclose(lib.arrays["model0.embedding"][lib.row["jazz/jazz.00000.wav"]],
                               arrays["model0.embedding"][2], rtol=1e-6)
    rock = lib.similar("rock/rock.00000.wav", k=3, feature="embedding")
    assert [m.id for m in rock] == ["blues/blues.00000.wav", "jazz/jazz.00000.wav", "pop/pop.00000.wav"]
    assert [m.similarity for m in rock] == pytest.approx(np.cos(np.radians([30, 100, 138.738])), abs=1e-4)
    pop = lib.similar("pop/pop.00000.wav", k=3, feature="embedding")  # jazz 121.3 degrees away, rock 138.7, blues 168.7
    assert [m.id for m in pop] == ["jazz/jazz.00000.wav", "rock/rock.00000.wav", "blues/blues.00000.wav"]
    grown = Library.build([model], music, tmp_path / "lib", max_chunks=2, progress=False,
                          files=[music / i for i in ids] + [music / "metal" / "metal.00000.wav"])
    assert grown.manifest["last_run"] == {"embedded": 1, "unchanged": 4, "skipped": 0, "dropped": 0}

    with pytest.raises(LibraryError, match="need exactly the arrays fingerprint, model0.embedding, "
                                           "model0.probabilities; got model0.embedding, model0.probabilities$"):
        Library.from_vectors(tmp_path / "other", [model], music, tracks, {k: arrays[k] for k in list(arrays)[:2]})
    with pytest.raises(LibraryError, match=rf"need one row per track \(4 tracks\): model0.embedding has shape "
                                           rf"\(3, {model.embed_dim}\)$"):
        Library.from_vectors(tmp_path / "other", [model], music, tracks, {**arrays, "model0.embedding": embedding[:3]})
    with pytest.raises(LibraryError, match=r"model0.probabilities has 3 columns for 10 classes$"):
        Library.from_vectors(tmp_path / "other", [model], music, tracks,
                             {**arrays, "model0.probabilities": np.ones((4, 3))})
    with pytest.raises(LibraryError, match=rf"model0.embedding has 8 columns for {model.embed_dim} embedding dimensions$"):
        Library.from_vectors(tmp_path / "other", [model], music, tracks, {**arrays, "model0.embedding": np.ones((4, 8))})
    with pytest.raises(LibraryError, match="track ids must be unique"):
        Library.from_vectors(tmp_path / "other", [model], music, tracks[:1] * 4, arrays)
    assert not (tmp_path / "other").exists()  # nothing is written before the input is checked


# ---- queries ----------------------------------------------------------------------------------
def test_a_library_is_written_and_read_a_batch_of_rows_at_a_time(models, music, tmp_path, monkeypatch):
    """The merge, the means, the feature vectors and the indexes go a batch of rows at a time (7
    here, so 50 tracks make 8 uneven batches) and give what the whole arrays give in memory;
    the file is safetensors as its own library reads it; an opened library maps its arrays
    rather than reading them; and a library written before ``means.safetensors`` opens with
    the same answers."""
    from safetensors import safe_open

    from zoo.recommend import indexing, library as library_module, store, tracks as tracks_module

    for module in (store, indexing, library_module, tracks_module):
        monkeypatch.setattr(module, "READ_ROWS", 7)
    model = from_pretrained(models[0])
    rng = np.random.default_rng(1)
    tracks = [Track(f"t/{i:03d}.wav", 1, 1, "0" * 64, 2.0, [{}]) for i in rng.permutation(50)]
    arrays = {"model0.embedding": rng.standard_normal((50, model.embed_dim)) + 3.0,
              "model0.probabilities": rng.dirichlet(np.ones(10), 50), "fingerprint": rng.standard_normal((50, 1152))}
    Library.from_vectors(tmp_path / "lib", [model], music, tracks, arrays)
    lib = Library.open(tmp_path / "lib")
    order = np.argsort([t.id for t in tracks])  # the library keeps its tracks in id order
    data = tmp_path / "lib" / lib.manifest["data"]
    with safe_open(str(data / "vectors.safetensors"), "np") as f:  # the rows' digest as libraries have held it
        assert f.metadata()["track_ids_sha256"] == hashlib.sha256(json.dumps([t.id for t in lib.tracks]).encode()).hexdigest()
        for name, values in arrays.items():
            np.testing.assert_array_equal(f.get_tensor(name), values[order].astype(np.float32))
    assert all(isinstance(values.base, np.memmap) for values in lib.arrays.values())

    def unit(rows):
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)

    embedding, probabilities = (arrays[f"model0.{kind}"][order] for kind in ("embedding", "probabilities"))
    expected = {"embedding": unit(embedding - embedding.mean(axis=0)),
                "probabilities": unit(probabilities - probabilities.mean(axis=0)),
                "fingerprint": unit(arrays["fingerprint"][order])}
    expected["combined"] = np.concatenate([expected["embedding"], expected["probabilities"]], axis=1) / np.sqrt(2)
    for feature, vectors in expected.items():
        np.testing.assert_allclose(lib.vectors(feature), vectors, atol=1e-5)
        _, found = lib.search_index(feature).search(vectors[:5].astype(np.float32), 4)
        np.testing.assert_array_equal(found, np.argsort(-(vectors[:5] @ vectors.T), axis=1)[:, :4])
    answers = [(m.id, round(m.similarity, 5)) for m in lib.similar("t/007.wav", k=5)]

    (data / "means.safetensors").unlink()  # as written before the means were stored
    older = Library.open(tmp_path / "lib")
    assert [(m.id, round(m.similarity, 5)) for m in older.similar("t/007.wav", k=5)] == answers


def test_a_vectors_file_is_written_whole_or_not_at_all(tmp_path):
    """``write_arrays`` refuses batches of the wrong shape, or too few or too many rows, naming
    the file, and leaves nothing behind."""
    from zoo.recommend.store import write_arrays

    path = tmp_path / "vectors.safetensors"
    with pytest.raises(ValueError, match=r"vectors.safetensors: given 2 rows of 3"):
        write_arrays(path, {"x": 4}, 3, [(["a", "b"], {"x": np.zeros((2, 4))})])
    with pytest.raises(ValueError, match=r"x rows 0 onwards have shape \(3, 5\), not \(3, 4\) within 3 rows"):
        write_arrays(path, {"x": 4}, 3, [(["a", "b", "c"], {"x": np.zeros((3, 5))})])
    with pytest.raises(ValueError, match=r"x rows 2 onwards have shape \(2, 4\), not \(2, 4\) within 3 rows"):
        write_arrays(path, {"x": 4}, 3, [(["a", "b"], {"x": np.zeros((2, 4))}), (["c", "d"], {"x": np.zeros((2, 4))})])
    assert list(tmp_path.iterdir()) == []


def test_re_encoded_copy_ranks_first_and_is_a_duplicate(library):
    proc = recommend_cli(library, "--track", "jazz/jazz.00001.wav", "-k", "3", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    ids = [m["id"] for m in result["matches"]]
    assert ids[0] == "copies/jazz-copy.ogg" and "jazz/jazz.00001.wav" not in ids  # never the query itself
    pairs = json.loads(recommend_cli(library, "--duplicates", "--format", "json").stdout)
    assert pairs == [{"a": "copies/jazz-copy.ogg", "b": "jazz/jazz.00001.wav", "similarity": pytest.approx(1, abs=0.01)}]


def test_similarity_and_what_matches_share(library):
    lib = Library.open(library)
    matches = lib.similar("rock/rock.00000.wav", k=5, feature="probabilities")
    assert [m.rank for m in matches] == [1, 2, 3, 4, 5]
    assert all(a.similarity >= b.similarity for a, b in zip(matches, matches[1:]))
    query = lib.vectors("probabilities")[lib.row["rock/rock.00000.wav"]]
    expected = brute_force_ranking(lib, query, "probabilities", {"rock/rock.00000.wav"})
    assert [m.id for m in matches] == expected[:5]
    query_labels = salient_by_hand(lib, lib.row["rock/rock.00000.wav"])
    for m in matches:
        assert m.similarity == pytest.approx(float(query @ lib.vectors("probabilities")[lib.row[m.id]]), abs=1e-5)
        assert m.shared == sorted(query_labels & salient_by_hand(lib, lib.row[m.id]))
    assert any(m.shared for m in matches)  # the check above is not vacuous
    by_path = lib.similar(str(lib.music_dir / "rock" / "rock.00000.wav"), k=5, feature="probabilities")
    assert [m.id for m in by_path] == [m.id for m in matches]


def test_liked_set_is_the_normalised_mean_and_is_excluded(library):
    lib = Library.open(library)
    liked = ["metal/metal.00000.wav", "metal/metal.00001.wav", "disco/disco.00002.wav"]
    matches = lib.like(liked, k=len(lib.tracks) - 3)
    assert not set(liked) & {m.id for m in matches} and len(matches) == len(lib.tracks) - 3
    profile = normalize(lib.vectors("combined")[[lib.row[t] for t in liked]].mean(axis=0, keepdims=True))[0]
    expected = sorted((r for r in range(len(lib.tracks)) if lib.tracks[r].id not in liked),
                      key=lambda r: -float(profile @ lib.vectors("combined")[r]))
    assert [m.id for m in matches[:5]] == [lib.tracks[r].id for r in expected[:5]]
    shared_by_all = set.intersection(*(salient_by_hand(lib, lib.row[t]) for t in liked))
    assert [m.shared for m in matches] == [sorted(shared_by_all & salient_by_hand(lib, lib.row[m.id])) for m in matches]


def test_salient_labels_worked_out_by_hand():
    names = ["a", "b", "c", "d", "e", "f", "g"]
    # a genre model: its top genre, and the second when at least half as likely (0.25 >= 0.5 * 0.5)
    assert salient_labels(np.array([0.1, 0.5, 0.25, 0.15]), names[:4], "multiclass") == {"b", "c"}
    assert salient_labels(np.array([0.1, 0.5, 0.24, 0.16]), names[:4], "multiclass") == {"b"}
    assert salient_labels(np.array([1.0]), names[:1], "multiclass") == {"a"}
    # a tagging model: the tags at or above 0.5 among its top 5 (b at 0.5 is sixth, c is below 0.5)
    assert salient_labels(np.array([0.9, 0.5, 0.49, 0.7, 0.8, 0.95, 0.6]), names, "multilabel") == {"a", "d", "e", "f", "g"}
    assert salient_labels(np.array([0.9, 0.5, 0.3]), names[:3], "multilabel") == {"a", "b"}
    assert salient_labels(np.array([0.3, 0.2]), names[:2], "multilabel") == set()


def test_diversification_changes_the_list(library):
    lib = Library.open(library)
    plain = [m.id for m in lib.similar("pop/pop.00000.wav", k=6, feature="embedding")]
    assert [m.id for m in lib.similar("pop/pop.00000.wav", k=6, feature="embedding", diversify=1.0)] == plain
    varied = [m.id for m in lib.similar("pop/pop.00000.wav", k=6, feature="embedding", diversify=0.3)]
    assert varied != plain and varied[0] == plain[0]


def test_mmr_on_a_hand_made_example():
    """Query (1, 0); c0 and c1 are near-twins close to it, c2 points elsewhere.

    sim(q, .) = 0.9950, 0.9929, 0.8944; sim(c0, c1) = 0.9998, sim(c0, c2) = 0.8454. After c0,
    lambda 0.5 scores c1 at 0.5 * 0.9929 - 0.5 * 0.9998 = -0.0035 and c2 at
    0.5 * 0.8944 - 0.5 * 0.8454 = +0.0245, so it takes c2; lambda 1 keeps the plain order.
    """
    query = np.array([1.0, 0.0], np.float32)
    candidates = normalize(np.array([[1.0, 0.1], [1.0, 0.12], [1.0, -0.5]]))
    sims = candidates @ query
    assert mmr(query, candidates, sims, 2, 1.0) == [0, 1]
    assert mmr(query, candidates, sims, 2, 0.5) == [0, 2]
    with pytest.raises(LibraryError, match="between 0 and 1"):
        mmr(query, candidates, sims, 2, 1.5)


def test_audio_from_outside_the_library(library, music, tmp_path):
    src = music / "hiphop" / "hiphop.00002.wav"
    y, sr = sf.read(src, dtype="float32")
    outside = tmp_path / "outside.flac"
    sf.write(outside, y, sr)
    proc = recommend_cli(library, "--audio", outside, "-k", "2", "--format", "csv")
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert len(rows) == 2 and rows[0]["id"] == "hiphop/hiphop.00002.wav" and rows[0]["rank"] == "1"
    assert rows[0]["query"].startswith(f"{outside} (")  # the file and its top labels
    lib = Library.open(library)
    row = lib.row["hiphop/hiphop.00002.wav"]
    # The same samples losslessly re-encoded: the file's top labels are the stored track's (model 0's
    # top three, a genre both models name keeping model 1's value), and it shares all its salient labels.
    merged = {name: p for per_model in lib.tracks[row].labels for name, p in per_model.items()}
    assert rows[0]["query"] == f"{outside} ({', '.join(f'{n} {p:.2f}' for n, p in list(merged.items())[:3])})"
    assert rows[0]["shared"] == ";".join(sorted(salient_by_hand(lib, row)))
    assert len(lib.tracks) == 31  # nothing was added


# ---- bad input: one line each --------------------------------------------------------------------
@pytest.mark.parametrize("args,message", [
    (["--track", "nope.wav"], "no track 'nope.wav'"),
    (["--audio", "tests/conftest.py"], "cannot read audio"),
    (["--track", "jazz/jazz.00001.wav", "--diversify", "2"], "between 0 and 1"),
    (["--track", ""], "no track ''"),
])
def test_bad_queries_get_one_line(library, args, message):
    proc = recommend_cli(library, *args)
    assert proc.returncode != 0 and message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


def test_bad_libraries_get_one_line(models, music, tmp_path):
    proc = recommend_cli(tmp_path, "--track", "x")
    assert "not a musiczoo library" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    empty = tmp_path / "empty_music"
    empty.mkdir()
    (empty / "notes.txt").write_text("no audio here")
    proc = index_cli(models[0], empty, "--out", tmp_path / "empty_lib")
    assert proc.returncode != 0 and "no audio files found" in proc.stderr and "Traceback" not in proc.stderr
    moved = tmp_path / "moved"
    shutil.copytree(music, moved / "music")
    assert index_cli(models[0], moved / "music", "--out", tmp_path / "lib", "--max-chunks", "1").returncode == 0
    (moved / "music").rename(moved / "elsewhere")
    proc = recommend_cli(tmp_path / "lib", "--track", "jazz/jazz.00001.wav")
    assert "is gone (moved or deleted)" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    # Pointing the library at the folder's new place embeds nothing again.
    proc = index_cli(models[0], moved / "elsewhere", "--out", tmp_path / "lib", "--max-chunks", "1")
    assert "(0 embedded, 31 unchanged, 0 dropped" in proc.stdout


def index_then_die(shard_tracks: int, arguments: str = "") -> str:
    """Python source of ``musiczoo`` (``main(arguments)``, or its command line when empty) whose
    index writes shards of ``shard_tracks`` tracks and SIGKILLs its process right after the first."""
    return textwrap.dedent(f"""
        import os, signal
        import zoo.recommend.indexing as indexing
        import zoo.recommend.shards as shards
        from zoo.cli import main
        indexing.SHARD_TRACKS = {shard_tracks}
        write = shards.write_shard
        def write_then_die(*args):
            write(*args)
            os.kill(os.getpid(), signal.SIGKILL)
        shards.write_shard = write_then_die
        main({arguments})
    """)


def test_an_interrupted_index_loses_nothing_and_is_never_taken_as_complete(models, music, tmp_path):
    """The indexing process is SIGKILLed right after its first shard is written."""
    out = tmp_path / "lib"
    script = index_then_die(8, f'["index", {str(models[0])!r}, {str(music)!r}, "--out", {str(out)!r}, "--max-chunks", "2"]')
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == -9
    assert len(list((out / "pending").glob("shard-*.json"))) == 1
    with pytest.raises(LibraryError, match="did not finish"):
        Library.open(out)
    done = index_cli(models[0], music, "--out", out, "--max-chunks", "2")
    assert done.returncode == 0, done.stderr
    # 8 tracks came from the killed run's shard; only the other 23 were embedded now.
    assert "31 tracks (23 embedded, 8 unchanged" in done.stdout
    assert len(Library.open(out).tracks) == 31 and not (out / "pending").exists()


def test_two_index_runs_on_one_library_take_turns(models, music, tmp_path):
    """Two real processes index one library at once. The first stops after its first shard until
    the second is blocked on the library's lock (it says so on stderr) or, without a lock, has
    written a shard of its own; then both finish. Every track must be there, and the second
    run, having waited, finds them all unchanged. (Unlocked, the first to finish removed
    ``pending/`` under the other, which then wrote a "complete" library of its last shard.)"""
    out, started, second_err = tmp_path / "lib", tmp_path / "first-shard-written", tmp_path / "second.err"
    first = textwrap.dedent(f"""
        import time
        from pathlib import Path
        import zoo.recommend.indexing as indexing
        import zoo.recommend.shards as shards
        from zoo.cli import main
        indexing.SHARD_TRACKS = 4
        write = shards.write_shard
        def write_then_wait(out, *args):
            write(out, *args)
            if not Path({str(started)!r}).exists():
                Path({str(started)!r}).touch()
                deadline = time.monotonic() + 120
                while time.monotonic() < deadline and "waiting for another process" not in \
                        Path({str(second_err)!r}).read_text() and len(list((out / "pending").glob("*.json"))) < 2:
                    time.sleep(0.05)
        shards.write_shard = write_then_wait
        main(["index", {str(models[0])!r}, {str(music)!r}, "--out", {str(out)!r}, "--max-chunks", "1"])
    """)
    second = textwrap.dedent(f"""
        import time
        from pathlib import Path
        import zoo.recommend.indexing as indexing
        from zoo.cli import main
        indexing.SHARD_TRACKS = 4
        while not Path({str(started)!r}).exists():
            time.sleep(0.05)
        main(["index", {str(models[0])!r}, {str(music)!r}, "--out", {str(out)!r}, "--max-chunks", "1"])
    """)
    second_err.write_text("")
    with open(second_err, "w") as err:
        procs = [subprocess.Popen([sys.executable, "-c", first], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, cwd=REPO),
                 subprocess.Popen([sys.executable, "-c", second], stdout=subprocess.PIPE, stderr=err, text=True,
                                  cwd=REPO)]
        outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], second_err.read_text()
    assert "waiting for another process writing the library" in second_err.read_text()
    assert "31 tracks (31 embedded, 0 unchanged" in outputs[0]
    assert "31 tracks (0 embedded, 31 unchanged" in outputs[1]
    assert len(Library.open(out).tracks) == 31 and not (out / "pending").exists()


TWO_CPU_PROCESSES = ("--accelerator", "cpu", "--devices", "2", "--strategy", "ddp")


def three_genres(music: Path, folder: Path) -> Path:
    """Eleven files: the blues, jazz and rock clips and two corrupt ones, ``rock/broken.wav`` and
    ``rock/broken2.wav`` (the 7th and 8th in id order: one for each of two ranks)."""
    for genre in ("blues", "jazz", "rock"):
        shutil.copytree(music / genre, folder / genre)
    shutil.copy(folder / "rock" / "broken.wav", folder / "rock" / "broken2.wav")
    return folder


def assert_same_library(built: Path, reference: Path) -> None:
    a, b = Library.open(built), Library.open(reference)
    assert [t.id for t in a.tracks] == [t.id for t in b.tracks] and len(a.tracks) == 9
    assert [(t.sha256, t.size, t.mtime_ns, t.duration_s) for t in a.tracks] == [
        (t.sha256, t.size, t.mtime_ns, t.duration_s) for t in b.tracks]
    assert set(a.arrays) == set(b.arrays)
    for name in a.arrays:
        np.testing.assert_allclose(a.arrays[name], b.arrays[name], rtol=1e-5, atol=1e-5, err_msg=name)
    assert a.manifest["skipped"] == b.manifest["skipped"]
    assert [s["id"] for s in a.manifest["skipped"]] == ["rock/broken.wav", "rock/broken2.wav"]


def test_two_processes_index_the_library_one_process_would(models, music, tmp_path):
    """Two real CPU processes started by Lightning (gloo): each embeds half of the files into its
    own shards, rank 0 merges them, and the library equals a one-process build of the folder,
    with the corrupt file of each rank listed as skipped."""
    folder = three_genres(music, tmp_path / "music")
    reference = Library.build([from_pretrained(models[0])], folder, tmp_path / "one", max_chunks=1, progress=False)
    proc = index_cli(models[0], folder, "--out", tmp_path / "two", "--max-chunks", "1", *TWO_CPU_PROCESSES)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("tracks (") == 1  # one summary line: rank 0's
    assert "9 tracks (9 embedded, 0 unchanged, 0 dropped, 2 unreadable skipped); embedded by rank: 5, 4" in proc.stdout
    assert_same_library(tmp_path / "two", reference.root)
    manifest = json.loads((tmp_path / "two" / "library.json").read_text())
    assert manifest["last_run"] == {"embedded": 9, "unchanged": 0, "skipped": 2, "dropped": 0, "embedded_by_rank": [5, 4]}
    assert not (tmp_path / "two" / "pending").exists()


def test_a_killed_two_process_index_resumes_with_only_the_missing_tracks(models, music, tmp_path):
    """Both ranks are SIGKILLed right after their first shard of two tracks: the next run (one
    process here) reuses the four tracks of both ranks' shards and embeds only the other five."""
    folder, out = three_genres(music, tmp_path / "music"), tmp_path / "lib"
    script = tmp_path / "index_then_die.py"  # a file, not -c: Lightning starts rank 1 by running it again
    script.write_text(index_then_die(2))
    proc = subprocess.run([sys.executable, str(script), "index", str(models[0]), str(folder), "--out", str(out),
                           "--max-chunks", "1", *TWO_CPU_PROCESSES], capture_output=True, text=True, timeout=300,
                          cwd=REPO)
    assert proc.returncode == -9, proc.stderr[-3000:]
    shards = sorted(p.name for p in (out / "pending").glob("shard-*.json"))
    assert sorted(name.split("-")[2] for name in shards) == ["00000", "00001"], shards  # one shard of each rank
    with pytest.raises(LibraryError, match="did not finish"):
        Library.open(out)
    resumed = Library.build([from_pretrained(models[0])], folder, out, max_chunks=1, progress=False)
    assert resumed.manifest["last_run"] == {"embedded": 5, "unchanged": 4, "skipped": 2, "dropped": 0}
    reference = Library.build([from_pretrained(models[0])], folder, tmp_path / "one", max_chunks=1, progress=False)
    assert_same_library(out, reference.root)


def run_main(capsys, *argv) -> tuple[int, str, str]:
    """The command in this process (no interpreter start-up): exit status, stdout, stderr."""
    capsys.readouterr()
    try:
        main([str(a) for a in argv])
        code = 0
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def small_library(models, music, out: Path, capsys) -> Path:
    """A library of the three blues clips (a copy of them, beside ``out``), one model, one chunk."""
    folder = out.parent / "blues-music"
    shutil.copytree(music / "blues", folder / "blues")
    assert run_main(capsys, "index", models[0], folder, "--out", out, "--max-chunks", "1")[0] == 0
    return folder


def swap_two_tracks(data: Path) -> None:
    """Put the vectors of the first two tracks in each other's rows, as a vectors file of the same
    tracks in another order would have them (its digest is that order's)."""
    from safetensors.numpy import load_file

    from zoo.recommend.store import write_arrays

    arrays = {name: values[[1, 0, *range(2, len(values))]] for name, values in load_file(str(data / "vectors.safetensors")).items()}
    ids = [t.id for t in TrackTable.open(data / "tracks")]
    ids[0], ids[1] = ids[1], ids[0]
    write_arrays(data / "vectors.safetensors", {k: v.shape[1] for k, v in arrays.items()}, len(ids), [(ids, arrays)])


@pytest.mark.parametrize("damage,named", [
    ("swapped rows", "vectors.safetensors: its rows are not those of the 3 tracks listed beside it"),
    ("truncated vectors", "vectors.safetensors: not a readable safetensors file"),
    ("a pickle as vectors", "vectors.safetensors: not a readable safetensors file"),
    ("truncated track ids", "tracks/ids.bin: 30 bytes, not the"),
    ("no music_dir", "library.json: damaged (no music folder, music_dir)"),
])
def test_a_damaged_library_is_one_line_and_index_rebuilds_it(models, music, tmp_path, damage, named, capsys):
    out = tmp_path / "lib"
    folder = small_library(models, music, out, capsys)
    data = out / json.loads((out / "library.json").read_text())["data"]
    query = ("recommend", out, "--track", "blues/blues.00000.wav", "-k", "2", "--format", "json")
    code, before, _ = run_main(capsys, *query)
    vectors = data / "vectors.safetensors"
    if damage == "swapped rows":
        swap_two_tracks(data)
    elif damage == "truncated vectors":
        vectors.write_bytes(vectors.read_bytes()[:5000])
    elif damage == "a pickle as vectors":
        import pickle

        vectors.write_bytes(pickle.dumps({"model0.embedding": [[0.0]]}))
    elif damage == "truncated track ids":
        os.truncate(data / "tracks" / "ids.bin", 30)
    else:
        manifest = json.loads((out / "library.json").read_text())
        del manifest["music_dir"]
        (out / "library.json").write_text(json.dumps(manifest))
    code, _, err = run_main(capsys, *query)
    assert code == 2 and named in err and "`musiczoo index`" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    code, repaired, err = run_main(capsys, "index", models[0], folder, "--out", out, "--max-chunks", "1")
    assert code == 0 and "3 tracks (" in repaired, err
    code, after, err = run_main(capsys, *query)
    assert code == 0, err
    assert [m["id"] for m in json.loads(after)["matches"]] == [m["id"] for m in json.loads(before)["matches"]]


def test_arrays_written_before_the_row_digest_are_still_read(models, music, tmp_path, capsys):
    """Libraries indexed before the rows were tied to tracks.json hold no digest: they open as
    before (unchecked), and the next index run writes one."""
    from safetensors.numpy import load_file, save_file

    out = tmp_path / "lib"
    folder = small_library(models, music, out, capsys)
    data = out / json.loads((out / "library.json").read_text())["data"]
    save_file(load_file(str(data / "vectors.safetensors")), str(data / "vectors.safetensors"))  # no metadata
    assert len(Library.open(out).tracks) == 3
    assert "(0 embedded, 3 unchanged" in run_main(capsys, "index", models[0], folder, "--out", out, "--max-chunks", "1")[1]
    swap_two_tracks(out / json.loads((out / "library.json").read_text())["data"])
    with pytest.raises(LibraryError, match="its rows are not those of the 3 tracks"):
        Library.open(out)


def test_a_file_deleted_while_its_shard_is_embedded_is_skipped(models, music, tmp_path, monkeypatch):
    from zoo.recommend import embedding

    folder = tmp_path / "music"
    for genre in ("blues", "jazz"):
        shutil.copytree(music / genre, folder / genre)
    embed = embedding.embed_files

    def embed_then_delete(models, paths, *args, **kwargs):
        results = embed(models, paths, *args, **kwargs)
        paths[1].unlink()  # gone after it was embedded, before its digest is taken
        return results

    monkeypatch.setattr(embedding, "embed_files", embed_then_delete)
    lib = Library.build([from_pretrained(models[0])], folder, tmp_path / "lib", max_chunks=1, progress=False)
    assert len(lib.tracks) == 5 and "blues/blues.00001.wav" not in lib.row
    assert lib.manifest["last_run"]["skipped"] == 1
    (skip,) = lib.manifest["skipped"]
    assert skip["id"] == "blues/blues.00001.wav" and "gone or unreadable during indexing" in skip["reason"]


@pytest.mark.parametrize("args,message", [
    (["--weights", "nan"], "--weights needs one positive, finite weight per model (1 models), got nan"),
    (["--weights", "inf"], "got inf"),
    (["--weights", "1,2"], "got 1.0,2.0"),
    (["--max-chunks", "0"], "--max-chunks must be a whole number of at least 1, got 0"),
    (["--batch-size", "0"], "--batch-size must be at least 1"),
    (["--accelerator", "cpu", "--devices", "two"],
     "cannot run with --accelerator cpu --devices two: `devices` selected with `CPUAccelerator` should be an int > 0"),
    (["--strategy", "nonsense"], "cannot run with --strategy nonsense: You selected an invalid strategy name"),
    (["--devices", "2", "--device", "cpu"], "--device is for one process; with --accelerator, --devices"),
])
def test_bad_index_arguments_are_refused_before_any_work(models, music, tmp_path, args, message, capsys):
    out = tmp_path / "lib"
    code, _, err = run_main(capsys, "index", models[0], music, "--out", out, *args)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()  # nothing was written: the folder can still become a library


def test_k_is_capped_at_the_library_size(library, monkeypatch):
    """Asking for more tracks than the library holds gives them all, without padding a
    billion rows (the index is never asked for more than the library's size)."""
    lib = Library.open(library)
    index = lib.search_index("combined")
    search = index.search

    def checked_search(queries, k, exclude=None):
        assert k <= len(lib.tracks), f"the index was asked for {k} tracks"
        return search(queries, k, exclude)

    monkeypatch.setattr(index, "search", checked_search)
    matches = lib.similar("jazz/jazz.00001.wav", k=1_000_000_000)
    assert len(matches) == len(lib.tracks) - 1 and "jazz/jazz.00001.wav" not in {m.id for m in matches}
    assert len(lib.like(["jazz/jazz.00001.wav", "pop/pop.00000.wav"], k=10**9, diversify=0.5)) == len(lib.tracks) - 2


# ---- recommend-eval ------------------------------------------------------------------------------
def test_recommend_eval_on_gtzan_layout(models, gtzan_rerelease, tmp_path, capsys):
    """The fault-filtered test split of a GTZAN tree: every feature choice and both baselines,
    written as JSON lines (synthetic GTZAN has no artists, so no artist filter)."""
    from benchmarks.recommend_eval import gtzan_ground_truth
    from zoo.recommend import evaluate

    data = gtzan_rerelease / "genres_original"
    test_files = [data / entry for entry in split_list("fault_filtered", "test")]
    Library.build([from_pretrained(models[0])], data, tmp_path / "lib", max_chunks=1, files=test_files, progress=False)
    results = tmp_path / "results.jsonl"
    main(["recommend-eval", str(tmp_path / "lib"), "--dataset", "gtzan", "-k", "5", "--results", str(results)])
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    assert [(r["models"], r["feature"]) for r in rows] == [
        ("crnn/mel", "embedding"), ("crnn/mel", "probabilities"), ("crnn/mel", "combined"),
        ("baseline: random", "-"), ("baseline: MFCC mean+std", "-")]
    assert all(r["data"] == "SYNTHETIC GTZAN fault-filtered test split (290 tracks)" and r["synthetic"] for r in rows)
    # The figures are the metrics of the library's own vectors, artist-filtered.
    lib = Library.open(tmp_path / "lib")
    rows_, genres, artists, _ = gtzan_ground_truth(lib)
    ids = evaluate.neighbours(lib.vectors("embedding")[rows_], 5, exclude_same=artists)
    expected = evaluate.genre_metrics(ids, genres, 5, exclude_same=artists)
    assert rows[0]["metrics"]["precision@5"] == pytest.approx(expected["precision@k"], abs=1e-4)
    assert rows[0]["metrics"]["map@5"] == pytest.approx(expected["map@k"], abs=1e-4)
    # Synthetic GTZAN has no artists: every track is its own (real GTZAN reads Sturm's index, below).
    assert len(set(artists)) == 290 and all(a.startswith("unknown:") for a in artists)
    table = capsys.readouterr().out
    assert "### Recommendation on SYNTHETIC GTZAN fault-filtered test split (290 tracks)" in table
    assert "| baseline: MFCC mean+std | - |" in table


def test_recommend_eval_scores_the_artist_split_s_test_part_of_the_real_excerpts(models, gtzan_excerpts, tmp_path, capsys):
    """A library of the 409 real excerpts is scored on exactly the test part the genre models were
    tested on (``GTZANDataModule(split="artist")``), with Sturm's artists filtered, under its label."""
    from benchmarks.recommend_eval import gtzan_ground_truth
    from datamodules.gtzan import GTZANDataModule

    model = from_pretrained(models[0])
    files = sorted(gtzan_excerpts.glob("*/*.wav"))
    tracks = [Track(p.relative_to(gtzan_excerpts).as_posix(), 1, 1, "0" * 64, 2.5, [{}]) for p in files]
    rng = np.random.default_rng(0)
    arrays = {"model0.embedding": rng.standard_normal((len(files), model.embed_dim)),
              "model0.probabilities": rng.dirichlet(np.ones(10), len(files)),
              "fingerprint": rng.standard_normal((len(files), 1152))}
    Library.from_vectors(tmp_path / "lib", [model], gtzan_excerpts, tracks, arrays)
    lib = Library.open(tmp_path / "lib")
    rows, genres, artists, data = gtzan_ground_truth(lib, "test", "artist")
    tested = [it.key for it in GTZANDataModule(str(gtzan_excerpts), split="artist").split_items()["test"]]
    assert [lib.tracks[r].id for r in rows] == tested and len(rows) == 77
    assert data == "GTZAN artist-disjoint test split (77 tracks)" and not any(a.startswith("unknown:") for a in artists[:5])
    main(["recommend-eval", str(tmp_path / "lib"), "--dataset", "gtzan", "--gtzan-split", "artist", "-k", "5",
          "--label", "REAL GTZAN excerpts, artist-disjoint test part"])
    table = capsys.readouterr().out
    assert "### Recommendation on REAL GTZAN excerpts, artist-disjoint test part (77 tracks)" in table
    assert "| baseline: MFCC mean+std | - |" in table


def test_recommend_eval_on_mtat_layout(models, tmp_path, capsys):
    from datamodules.synthetic_mtat import make_synthetic_mtat

    root = make_synthetic_mtat(tmp_path / "mtat", n_clips=80, seconds=1.0, sample_rate=SR, n_broken=0)
    mp3s = sorted(root.rglob("*.mp3"))
    Library.build([from_pretrained(models[0])], root, tmp_path / "lib", max_chunks=1, files=mp3s, progress=False)
    main(["recommend-eval", str(tmp_path / "lib"), "--dataset", "mtat", "-k", "3"])
    table = capsys.readouterr().out
    assert "MTAT top-50 test split" in table and "| jaccard@3 | ndcg@3 |" in table
    with pytest.raises(SystemExit) as e:
        main(["recommend-eval", str(tmp_path / "lib"), "--dataset", "gtzan"])
    assert e.value.code == 2 and "no track of the GTZAN fault-filtered test split" in capsys.readouterr().err


def test_recommend_eval_finds_sturm_s_index_beside_real_gtzan(shared_data, tmp_path):
    """Real GTZAN needs the artist index (a same-artist neighbour would count as a hit); it is
    found in ``splits/`` beside the music folder or a folder or two up, else one line says how to get it."""
    from benchmarks.recommend_eval import _artists

    music = tmp_path / "gtzan" / "genres"
    music.mkdir(parents=True)
    with pytest.raises(LibraryError) as raised:
        _artists(music)
    assert str(raised.value) == (f"GTZAN's artist index needs its lists (GTZANindex.txt is not in {music / 'splits'}): "
                                 f"run musiczoo download gtzan --root DIR (or --lists-only); the GTZAN ground truth "
                                 f"excludes same-artist neighbours")
    (tmp_path / "gtzan" / "splits").mkdir()
    shutil.copyfile(shared_data / "gtzan" / "GTZANindex.txt", tmp_path / "gtzan" / "splits" / "GTZANindex.txt")
    index = _artists(music)
    assert len(index) == 1000 and index["blues.00000.wav"] == "John Lee Hooker"
