"""Other performances of the same work (``--versions``), beside similarity and duplicates.

A library of real WAV files, a genre model and a version identification model (real zoo
models, random weights), whose vectors are written with ``Library.from_vectors``: 4 works
performed in 3 styles each. Under the version model a work's performances lie close together
whatever their style; under the genre model a track lies with the other works of its style. So
``--versions`` must find the same work first and ``--track`` (the kind of music) must not, and
the version model must stay out of the kind-of-music features. One library is indexed end to
end through ``musiczoo index`` with both models, to show the real pipeline writes and answers
the ``versions`` feature too.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from datamodules.synthetic import make_synthetic_gtzan
from zoo.build import build_model
from zoo.cli import main
from zoo.factory import create_model
from zoo.hub import save_pretrained
from zoo.recommend.index import normalize
from zoo.recommend.library import Library, LibraryError, Track, salient_labels
from zoo.recommend.store import default_feature, features_of
from zoo.spec import ModelSpec

SR = 8000
GENRES = ["blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock"]
STYLES = ["blues", "jazz", "metal"]  # each work is performed once in each
WORKS = ["autumn", "bolero", "caravan", "danny"]
TRAINING_WORKS = [f"W_{i:04d}" for i in range(5)]


def genre_model():
    torch.manual_seed(0)
    return create_model("crnn", num_classes=10, sample_rate=SR, channels=[8, 16, 16, 16], chunk_seconds=1.0,
                        label_names=GENRES, transform_params={"n_fft": 256, "hop_length": 128, "n_mels": 32}).eval()


def version_model():
    torch.manual_seed(1)
    spec = ModelSpec(architecture="fcn", transform="cqt", num_classes=len(TRAINING_WORKS), task="versions",
                     label_names=TRAINING_WORKS, sample_rate=SR, chunk_seconds=1.0, model_params={"channels": [8] * 5})
    return build_model(spec).eval()


def ids() -> list[str]:
    return [f"{style}/{work}.wav" for work in WORKS for style in STYLES]


def write_music(folder: Path) -> Path:
    """One real 1 s WAV per performance: the work's melody note, in its style's loudness."""
    rng = np.random.default_rng(0)
    for n, track in enumerate(ids()):
        path = folder / track
        path.parent.mkdir(parents=True, exist_ok=True)
        t = np.arange(SR) / SR
        sf.write(path, (0.2 * np.sin(2 * np.pi * (220 + 20 * n) * t) + 0.01 * rng.standard_normal(SR)).astype(np.float32), SR)
    return folder


def top_labels(probabilities: np.ndarray, names: list[str]) -> dict[str, float]:
    order = np.argsort(-probabilities)[:5]
    return {names[j]: round(float(probabilities[j]), 4) for j in order}


def arrays_for(models, with_versions: bool = True) -> dict[str, np.ndarray]:
    """Genre vectors clustered by style, version vectors clustered by work (another random
    direction per work, the performances within 0.1 of it), probabilities to match."""
    rng = np.random.default_rng(0)
    genre, versions = models[0], (models[1] if with_versions else None)
    style = np.array([STYLES.index(i.split("/")[0]) for i in ids()])
    work = np.array([WORKS.index(Path(i).stem) for i in ids()])
    style_centres = rng.standard_normal((len(STYLES), genre.embed_dim))
    arrays = {"model0.embedding": style_centres[style] + 0.1 * rng.standard_normal((len(style), genre.embed_dim)),
              "fingerprint": rng.standard_normal((len(style), 1152))}
    probabilities = rng.dirichlet(np.ones(10), len(style)) * 0.2
    probabilities[np.arange(len(style)), [GENRES.index(STYLES[s]) for s in style]] += 0.8
    arrays["model0.probabilities"] = probabilities
    if versions is not None:
        work_centres = rng.standard_normal((len(WORKS), versions.embed_dim))
        arrays["model1.embedding"] = work_centres[work] + 0.1 * rng.standard_normal((len(work), versions.embed_dim))
        arrays["model1.probabilities"] = rng.dirichlet(np.ones(len(TRAINING_WORKS)), len(work))
    return {name: values.astype(np.float32) for name, values in arrays.items()}


def tracks_for(music: Path, arrays: dict, models) -> list[Track]:
    names = [GENRES, TRAINING_WORKS][:len(models)]
    return [Track(i, (music / i).stat().st_size, (music / i).stat().st_mtime_ns,
                  hashlib.sha256((music / i).read_bytes()).hexdigest(), 1.0,
                  [top_labels(arrays[f"model{m}.probabilities"][n], names[m]) for m in range(len(models))])
            for n, i in enumerate(ids())]


@pytest.fixture(scope="module")
def music(tmp_path_factory) -> Path:
    return write_music(tmp_path_factory.mktemp("covers") / "music")


@pytest.fixture(scope="module")
def models():
    return genre_model(), version_model()


def library_of(out: Path, music: Path, models, arrays: dict) -> Path:
    Library.from_vectors(out, models, music, tracks_for(music, arrays, models), arrays, max_chunks=1)
    return out


@pytest.fixture(scope="module")
def both(tmp_path_factory, music, models) -> Path:
    """The genre model and the version model."""
    return library_of(tmp_path_factory.mktemp("both") / "library", music, models, arrays_for(models))


@pytest.fixture(scope="module")
def genres_only(tmp_path_factory, music, models) -> Path:
    """The same tracks and genre vectors, without the version model."""
    return library_of(tmp_path_factory.mktemp("genres") / "library", music, models[:1], arrays_for(models, False))


@pytest.fixture(scope="module")
def versions_only(tmp_path_factory, music, models) -> Path:
    """The version model alone (its arrays renamed model0)."""
    arrays = arrays_for(models)
    arrays = {"model0.embedding": arrays["model1.embedding"], "model0.probabilities": arrays["model1.probabilities"],
              "fingerprint": arrays["fingerprint"]}
    return library_of(tmp_path_factory.mktemp("versions") / "library", music, models[1:], arrays)


def run_main(capsys, *argv) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        main([str(a) for a in argv])
        code = 0
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def same_work(track: str) -> set[str]:
    return {i for i in ids() if Path(i).stem == Path(track).stem and i != track}


def same_style(track: str) -> set[str]:
    return {i for i in ids() if i.split("/")[0] == track.split("/")[0] and i != track}


# ---- which features a library offers ---------------------------------------------------------------
def test_features_offered_by_the_models_tasks():
    assert features_of(["multiclass"]) == ("embedding", "probabilities", "combined")
    assert features_of(["multiclass", "versions"]) == ("embedding", "probabilities", "combined", "versions")
    assert features_of(["versions"]) == ("versions",)
    assert features_of(["versions", "versions"]) == ("versions",)
    assert features_of(["multilabel", "regression", "versions"]) == (
        "embedding", "probabilities", "combined", "mood", "versions")
    assert features_of(["regression"]) == ("embedding", "probabilities", "combined", "mood")  # as before
    assert [default_feature(t) for t in (["multiclass"], ["multiclass", "versions"], ["versions"], ["regression"])] == [
        "combined", "combined", "versions", "combined"]


def test_a_version_model_shares_no_labels():
    probabilities = np.array([0.9, 0.05, 0.05], np.float32)
    assert salient_labels(probabilities, ["W_1", "W_2", "W_3"], "versions") == set()
    assert salient_labels(probabilities, ["blues", "jazz", "rock"], "multiclass") == {"blues"}


def test_the_library_writes_and_reports_the_versions_feature(both, genres_only, versions_only):
    lib = Library.open(both)
    assert lib.tasks == ["multiclass", "versions"] and lib.default_feature == "combined"
    assert lib.features == ("embedding", "probabilities", "combined", "versions")
    index = both / lib.manifest["data"] / "index"
    assert sorted(p.name for p in index.glob("*.faiss")) == [
        "combined.faiss", "embedding.faiss", "fingerprint.faiss", "probabilities.faiss", "versions.faiss"]
    assert "versions" not in Library.open(genres_only).features
    alone = Library.open(versions_only)
    assert alone.features == ("versions",) and alone.default_feature == "versions"
    assert sorted(p.name for p in (versions_only / alone.manifest["data"] / "index").glob("*.faiss")) == [
        "fingerprint.faiss", "versions.faiss"]


# ---- what each feature is made of ----------------------------------------------------------------
def test_the_kind_of_music_features_leave_the_version_model_out(both, genres_only):
    """``embedding``, ``probabilities`` and ``combined`` of the library with the version model are
    those of the library without it, to float precision; ``versions`` is the version model's
    embedding alone, centred on the library's mean and unit length."""
    with_versions, without = Library.open(both), Library.open(genres_only)
    for feature in ("embedding", "probabilities", "combined"):
        a, b = with_versions.vectors(feature), without.vectors(feature)
        assert a.shape == b.shape, feature
        np.testing.assert_allclose(a, b, atol=1e-6, err_msg=feature)
    genre = without.model_entries[0]
    assert with_versions.vectors("combined").shape[1] == Library.open(genres_only).vectors("embedding").shape[1] + len(
        genre["label_names"])
    embedding = np.asarray(with_versions.arrays["model1.embedding"], np.float64)
    expected = normalize((embedding - embedding.mean(axis=0)).astype(np.float32))
    np.testing.assert_allclose(with_versions.vectors("versions"), expected, atol=1e-5)
    assert with_versions.vectors("versions").shape == (len(ids()), 8)


# ---- the queries ---------------------------------------------------------------------------------
def test_versions_finds_the_same_work_and_similarity_the_same_kind(both):
    lib = Library.open(both)
    for track in ids():
        found = lib.versions(track, k=2)
        assert {m.id for m in found} == same_work(track), track  # the other two performances first
        assert track not in {m.id for m in lib.versions(track, k=len(ids()))}  # never the track itself
        assert [m.rank for m in found] == [1, 2] and found[0].similarity >= found[1].similarity > 0.9
        similar = lib.similar(track, k=3)  # combined, the default: the same style, the other works
        assert {m.id for m in similar} == same_style(track) and not {m.id for m in similar} & same_work(track)
    # a row number and a path name the track as for --track; the matches name no training work
    row = lib.row["jazz/bolero.wav"]
    by_row = lib.versions(row, k=2)
    assert [m.id for m in by_row] == [m.id for m in lib.versions(str(lib.path_of("jazz/bolero.wav")), k=2)]
    for match in by_row:
        assert not [name for name in [*match.shared, *match.labels] if name.startswith("W_")]
        assert match.labels and set(match.labels) <= set(GENRES)
    # the versions feature as a similarity feature is the same ranking
    assert [m.id for m in lib.similar(row, k=5, feature="versions")] == [m.id for m in lib.versions(row, k=5)]


def test_recommend_versions_on_the_command_line(both, capsys):
    code, out, err = run_main(capsys, "recommend", both, "--versions", "blues/caravan.wav", "-k", "3")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "versions of blues/caravan.wav:" and len(lines) == 4
    assert {line.split()[2] for line in lines[1:3]} == same_work("blues/caravan.wav")
    assert [line.split()[0] for line in lines[1:]] == ["1", "2", "3"]
    assert "W_" not in out

    code, out, err = run_main(capsys, "recommend", both, "--versions", "blues/caravan.wav", "-k", "2", "--format", "json")
    assert code == 0, err
    answer = json.loads(out)
    lib = Library.open(both)
    assert answer["query"] == "blues/caravan.wav"
    assert answer["matches"] == [m.to_dict() for m in lib.versions("blues/caravan.wav", k=2)]
    assert {m["id"] for m in answer["matches"]} == same_work("blues/caravan.wav")
    assert all(m["similarity"] > 0.9 for m in answer["matches"])

    code, out, err = run_main(capsys, "recommend", both, "--versions", "metal/danny.wav", "-k", "2", "--format", "csv")
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["query"] for r in rows] == ["metal/danny.wav"] * 2 and {r["id"] for r in rows} == same_work("metal/danny.wav")

    # --track, the same library: the kind of music (combined by default), not the work
    code, out, err = run_main(capsys, "recommend", both, "--track", "blues/caravan.wav", "-k", "3")
    assert code == 0, err
    assert out.splitlines()[0] == "like blues/caravan.wav:"
    assert {line.split()[2] for line in out.splitlines()[1:]} == same_style("blues/caravan.wav")
    code, out, err = run_main(capsys, "recommend", both, "--track", "blues/caravan.wav", "-k", "2",
                              "--features", "versions")
    assert code == 0 and {line.split()[2] for line in out.splitlines()[1:]} == same_work("blues/caravan.wav")


def test_a_library_of_version_models_only_ranks_by_versions(versions_only, capsys):
    lib = Library.open(versions_only)
    assert {m.id for m in lib.similar("jazz/autumn.wav", k=2)} == same_work("jazz/autumn.wav")  # the default: versions
    code, out, err = run_main(capsys, "recommend", versions_only, "--track", "jazz/autumn.wav", "-k", "2")
    assert code == 0 and {line.split()[2] for line in out.splitlines()[1:]} == same_work("jazz/autumn.wav"), err
    code, out, err = run_main(capsys, "recommend", versions_only, "--versions", "jazz/autumn.wav", "-k", "2")
    assert code == 0 and {line.split()[2] for line in out.splitlines()[1:]} == same_work("jazz/autumn.wav"), err
    for match in lib.versions("jazz/autumn.wav", k=2):  # no labels a listener would share
        assert match.shared == [] and match.labels == {}


# ---- refusals: one line each -----------------------------------------------------------------------
@pytest.mark.parametrize("which, args, message", [
    ("genres_only", ["--versions", "jazz/autumn.wav"],
     "the versions feature needs a version identification (versions) model among the library's models; "
     "its models are multiclass"),
    ("genres_only", ["--track", "jazz/autumn.wav", "--features", "versions"],
     "the versions feature needs a version identification (versions) model among the library's models; "
     "its models are multiclass"),
    ("versions_only", ["--track", "jazz/autumn.wav", "--features", "combined"],
     "the combined feature needs a genre, tag or emotion model among the library's models; its models are versions "
     "(a version model finds other performances of a work, the versions feature, not music of the same kind)"),
    ("versions_only", ["--like", "jazz/autumn.wav", "--features", "mood"],
     "the mood feature needs an emotion (regression) model among the library's models; its models are versions"),
    ("both", ["--versions", "jazz/autumn.wav", "--features", "combined"],
     "--versions ranks by the versions feature alone, undiversified: drop --features combined"),
    ("both", ["--versions", "jazz/autumn.wav", "--diversify", "0.5"],
     "--versions ranks by the versions feature alone, undiversified: drop --diversify"),
    ("both", ["--versions", "nope.wav"], "no track 'nope.wav'"),
])
def test_bad_versions_queries_get_one_line(request, capsys, which, args, message):
    code, out, err = run_main(capsys, "recommend", request.getfixturevalue(which), *args)
    assert code != 0 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"musiczoo recommend: error: {message}"), err
    assert lines[0] == f"musiczoo recommend: error: {message}" or message.startswith("no track")


def test_the_python_api_refuses_alike(genres_only, versions_only):
    with pytest.raises(LibraryError, match=r"^the versions feature needs a version identification \(versions\) "
                                           r"model among the library's models; its models are multiclass$"):
        Library.open(genres_only).versions("jazz/autumn.wav")
    with pytest.raises(LibraryError, match="^the embedding feature needs a genre, tag or emotion model"):
        Library.open(versions_only).similar("jazz/autumn.wav", feature="embedding")
    with pytest.raises(LibraryError, match="^the probabilities feature needs a genre, tag or emotion model"):
        # refused before the file is embedded
        Library.open(versions_only).similar_to_audio("no-such-file.wav", feature="probabilities")


# ---- the real pipeline ----------------------------------------------------------------------------
def test_musiczoo_index_with_a_genre_and_a_version_model(models, tmp_path, capsys):
    """``musiczoo index GENRE_MODEL VERSION_MODEL MUSIC_DIR``: real audio through both models; the
    versions index answers what a brute-force ranking of the version model's vectors says."""
    genre = save_pretrained(models[0], tmp_path / "genre")
    versions = save_pretrained(models[1], tmp_path / "versions")
    music = make_synthetic_gtzan(tmp_path / "music", seconds=2.0, sample_rate=16000, clips_per_genre=1)
    out = tmp_path / "library"
    code, _, err = run_main(capsys, "index", genre, versions, music, "--out", out, "--max-chunks", "2")
    assert code == 0, err
    lib = Library.open(out)
    assert lib.tasks == ["multiclass", "versions"] and "versions" in lib.features
    assert (out / lib.manifest["data"] / "index" / "versions.faiss").is_file()
    vectors = lib.vectors("versions")
    row = 3
    by_hand = [lib.tracks[r].id for r in sorted((r for r in range(len(lib.tracks)) if r != row),
                                                key=lambda r: -float(vectors[row] @ vectors[r]))][:4]
    code, out_text, err = run_main(capsys, "recommend", out, "--versions", row, "-k", "4", "--format", "json")
    assert code == 0, err
    assert [m["id"] for m in json.loads(out_text)["matches"]] == by_hand
    assert all(not name.startswith("W_") for m in json.loads(out_text)["matches"] for name in m["labels"])
