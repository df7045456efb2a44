"""Synthetic covers: the clique-table layout on disk, deterministic, and a task that pitch features
solve and timbre features do not."""

from __future__ import annotations

import csv
from collections import Counter

import numpy as np
import soundfile as sf

from datamodules.synthetic_covers import TEMPO_FACTOR, make_synthetic_covers, version_recipe, work_material
from datamodules.synthetic_marker import is_synthetic


def tree_bytes(base) -> dict[str, bytes]:
    return {p.relative_to(base).as_posix(): p.read_bytes() for p in sorted(base.rglob("*")) if p.is_file()}


def read_table(root) -> list[dict[str, str]]:
    with open(root / "cliques.csv", newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == ["work_id", "performance_id", "file"]
        return list(reader)


def test_layout_table_and_marker(tmp_path):
    out = tmp_path / "covers"
    assert make_synthetic_covers(out, n_works=3, versions=2, seconds=1.5, sample_rate=8000, seed=3) == out
    rows = read_table(out)
    assert [(r["work_id"], r["performance_id"], r["file"]) for r in rows] == [
        (f"W_{w:04d}", f"P_{w:04d}_{v}", f"audio/W_{w:04d}/P_{w:04d}_{v}.wav") for w in (1, 2, 3) for v in (1, 2)]
    assert len({r["performance_id"] for r in rows}) == len(rows) == 6
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.wav")) == sorted(r["file"] for r in rows)
    for r in rows:
        info = sf.info(out / r["file"])
        assert (info.samplerate, info.frames, info.channels, info.subtype) == (8000, 12000, 1, "PCM_16")
        x, _ = sf.read(out / r["file"], dtype="float32")
        assert 0.4 < np.abs(x).max() < 0.95  # normalised, with headroom
    assert is_synthetic(out)


def test_same_seed_same_bytes(tmp_path):
    kwargs = dict(n_works=3, versions=2, seconds=1.0, sample_rate=8000, seed=5)
    files = tree_bytes(make_synthetic_covers(tmp_path / "a", **kwargs))
    assert tree_bytes(make_synthetic_covers(tmp_path / "b", **kwargs, workers=1)) == files  # any number of threads
    assert tree_bytes(make_synthetic_covers(tmp_path / "c", **{**kwargs, "seed": 6})) != files
    # A work does not depend on how many works are written.
    two = tree_bytes(make_synthetic_covers(tmp_path / "d", **{**kwargs, "n_works": 2}))
    assert {k: v for k, v in two.items() if k.startswith("audio/")} == {
        k: v for k, v in files.items() if k.startswith(("audio/W_0001/", "audio/W_0002/"))}


def chroma_and_mfcc(path) -> tuple[np.ndarray, np.ndarray]:
    """The file's mean chroma (librosa's STFT chroma; tuning fixed at 0, as the synthesis is in tune)
    and mean MFCCs (timbre, what a genre baseline sees)."""
    import librosa

    x, sr = sf.read(path, dtype="float32")
    chroma = librosa.feature.chroma_stft(y=x, sr=sr, n_fft=4096, hop_length=2048, tuning=0.0).mean(1)
    return chroma, librosa.feature.mfcc(y=x, sr=sr, n_mfcc=20).mean(1)


def retrieval(similarity: np.ndarray, works: np.ndarray) -> tuple[float, float]:
    """(top-1 accuracy: the nearest other performance is of the same work; the share of queries whose
    own work's other performances are nearer on average than the other works' performances)."""
    sim = similarity.copy()
    np.fill_diagonal(sim, -np.inf)
    same = works[:, None] == works[None]
    np.fill_diagonal(same, False)
    other = ~same & ~np.eye(len(works), dtype=bool)
    top1 = float(np.mean(same[np.arange(len(works)), sim.argmax(1)]))
    sim[np.isinf(sim)] = 0
    nearer = float(np.mean((sim * same).sum(1) / same.sum(1) > (sim * other).sum(1) / other.sum(1)))
    return top1, nearer


def test_versions_are_found_by_key_invariant_chroma_not_by_timbre(tmp_path):
    """16 works x 3 versions of 12 s at 16 kHz, seed 0 (chance top-1: 2/47 = 0.043). Measured:
    chroma under the best of 12 transpositions: top-1 0.354, own versions nearer on average for
    0.917 of the queries; mean MFCCs (z-scored, cosine): top-1 0.021, nearer 0.583. Over seeds 0-5
    chroma top-1 ranged 0.25-0.52 (nearer 0.75-0.96) and MFCC top-1 0.00-0.10 (nearer 0.44-0.63).
    At the default size (60 x 4, 22,050 Hz, chance 0.013) chroma top-1 was 0.204 and MFCC 0.021.
    The best transposition between two versions of a work was their recipes' key difference for
    40 of the 48 pairs (0.83; 0.77-0.94 over seeds 0-2)."""
    n_works, versions = 16, 3
    out = make_synthetic_covers(tmp_path, n_works=n_works, versions=versions, seconds=12.0, sample_rate=16000, seed=0)
    rows = read_table(out)
    works = np.array([r["work_id"] for r in rows])
    chroma, mfcc = (np.array(x) for x in zip(*(chroma_and_mfcc(out / r["file"]) for r in rows)))

    c = chroma - chroma.mean(1, keepdims=True)
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    shifted = np.stack([c @ np.roll(c, s, axis=1).T for s in range(12)])  # [s, i, j]: c_i . (c_j rolled by s)
    chroma_top1, chroma_nearer = retrieval(shifted.max(0), works)
    m = (mfcc - mfcc.mean(0)) / mfcc.std(0)
    m /= np.linalg.norm(m, axis=1, keepdims=True)
    mfcc_top1, mfcc_nearer = retrieval(m @ m.T, works)
    assert chroma_top1 >= 0.2 and chroma_nearer >= 0.7, (chroma_top1, chroma_nearer)
    assert mfcc_top1 <= 0.15 and mfcc_nearer <= 0.7, (mfcc_top1, mfcc_nearer)
    assert chroma_top1 >= mfcc_top1 + 0.15

    # The versions are transpositions: the best shift is the key difference the recipes name.
    keys = np.array([version_recipe(w, v, 0).key for w in range(1, n_works + 1) for v in range(1, versions + 1)])
    pairs = [(i, j) for i in range(len(works)) for j in range(i + 1, len(works)) if works[i] == works[j]]
    found = np.mean([shifted[:, i, j].argmax() == (keys[i] - keys[j]) % 12 for i, j in pairs])
    assert found >= 0.6, found


def test_versions_differ_in_key_tempo_structure_and_style():
    """From the recipes of 60 works x 4 versions (seed 0), measured: every work's versions are in
    4 different keys, with 2+ forms and 2+ styles (3+ for 53 works); each of the 10 styles
    performs 16-24 works."""
    n_works, versions = 60, 4
    recipes = {(w, v): version_recipe(w, v, 0) for w in range(1, n_works + 1) for v in range(1, versions + 1)}
    first_keys = Counter()
    for w in range(1, n_works + 1):
        mine = [recipes[w, v] for v in range(1, versions + 1)]
        first_keys[mine[0].key] += 1
        assert len({r.key for r in mine}) == versions  # no two versions of a work in one key
        base = work_material(w, 0).bpm
        for r in mine:
            assert TEMPO_FACTOR[0] <= r.tempo_factor <= TEMPO_FACTOR[1] and np.isclose(r.bpm, base * r.tempo_factor)
        assert len({round(r.bpm, 3) for r in mine}) == versions
        assert len({(r.structure, r.start_bar) for r in mine}) > 1
        assert len({r.style for r in mine}) > 1
    assert len(first_keys) > 6  # the first version is not the work's "original" key
    works_per_style = Counter(s for s, _ in {(r.style, w) for (w, _), r in recipes.items()})
    assert len(works_per_style) >= 8 and min(works_per_style.values()) >= 5  # styles cross works
    assert 0.1 < np.mean([r.drums == "none" for r in recipes.values()]) < 0.6
    assert version_recipe(7, 2, 0) == recipes[7, 2] and version_recipe(7, 2, 1) != recipes[7, 2]


def test_cli_synth_covers(tmp_path, capsys):
    from zoo.cli.main import main

    out = tmp_path / "covers"
    main(["synth", "covers", str(out), "--works", "3", "--versions", "2", "--seconds", "4"])
    assert f"synthetic covers written to {out}" in capsys.readouterr().out
    rows = read_table(out)
    assert len(rows) == 6 and is_synthetic(out)
    info = sf.info(out / rows[-1]["file"])
    assert (info.samplerate, info.frames) == (22050, 4 * 22050)
