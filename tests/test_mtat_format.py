"""MagnaTagATune formats: annotations_final.csv, the top-50 split derived from its real sources, synthetic releases."""

from __future__ import annotations

import pickle
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from datamodules.mtat_format import (
    MTAT_TAGS,
    read_annotations,
    top50_label_matrix,
    top50_tags,
)
from datamodules.mtat_split import (
    INDEX_SOURCE,
    LIST_SOURCES,
    TAGS_SOURCE,
    derive_top50_split,
    load_pickled_str_list,
    load_top50_split,
)
from datamodules.split_lists import MissingListError
from datamodules.synthetic_mtat import make_synthetic_mtat, part_sizes

SR = 16000


def copy_split_sources(shared: Path, release: Path) -> Path:
    """The five source files, as ``musiczoo download mtat`` stores them, in ``release/splits``."""
    folder = release / "splits"
    folder.mkdir(parents=True)
    for name in (*LIST_SOURCES.values(), TAGS_SOURCE):
        shutil.copyfile(shared / "mtat" / "jongpil" / name, folder / name)
    shutil.copyfile(shared / "mtat" / "musicnn" / INDEX_SOURCE, folder / INDEX_SOURCE)
    return folder


def _quoted(values) -> str:
    return "\t".join(f'"{v}"' for v in values) + "\n"


def _decode(path: Path):
    """(audio, sr) or None when the file does not decode, as a loader would see it."""
    try:
        return sf.read(path, dtype="float32")
    except sf.LibsndfileError:
        return None


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> Path:
    return make_synthetic_mtat(tmp_path_factory.mktemp("mtat"), seed=0, n_clips=60, seconds=2.0, sample_rate=SR)


@pytest.fixture(scope="module")
def parsed(release):
    return read_annotations(release / "annotations_final.csv")


# ---------------------------------------------------------------- top-50 split and tag list
def test_top50_tags_order_and_names():
    tags = top50_tags()
    assert len(tags) == len(set(tags)) == 50
    assert tags[:3] == ["guitar", "classical", "slow"] and tags[-1] == "choral"
    # minzwon/musicnn order; jongpil's y_*.npy swap these two columns
    assert tags[47] == "metal" and tags[48] == "female voice"
    assert set(tags) <= set(MTAT_TAGS)


def test_mtat_tag_header_is_188_unique_names():
    assert len(MTAT_TAGS) == len(set(MTAT_TAGS)) == 188
    assert {"no voice", "no voices", "no vocal", "no vocals"} <= set(MTAT_TAGS)


def test_split_derived_from_the_real_sources(shared_data, tmp_path):
    assert derive_top50_split(copy_split_sources(shared_data, tmp_path)) == {"train": 15244, "val": 1529, "test": 4332}
    splits = {name: load_top50_split(tmp_path, name) for name in ("train", "val", "test")}
    folders = {"train": set("0123456789ab"), "val": {"c"}, "test": set("def")}
    for name, entries in splits.items():
        ids = [c for c, _ in entries]
        assert ids == sorted(ids) and len(set(ids)) == len(ids)
        assert {p.split("/")[0] for _, p in entries} == folders[name]
        assert all(p.endswith(".mp3") for _, p in entries)
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        assert not {c for c, _ in splits[a]} & {c for c, _ in splits[b]}
        assert not {p for _, p in splits[a]} & {p for _, p in splits[b]}
    assert splits["test"][0] == (2, "f/american_bach_soloists-j_s__bach_solo_cantatas-01-bwv54__i_aria-30-59.mp3")
    # minzwon's valid/test lists (idx = annotations row = index line) name the same clips.
    index = (shared_data / "mtat" / "musicnn" / INDEX_SOURCE).read_text().splitlines()
    for name, part in (("valid", "val"), ("test", "test")):
        minzwon = [str(e).split("\t") for e in np.load(shared_data / "mtat" / f"{name}.npy")]
        assert {p for _, p in minzwon} == {p for _, p in splits[part]}
        assert {int(index[int(i)].split("\t")[0]) for i, _ in minzwon} == {c for c, _ in splits[part]}
    with pytest.raises(ValueError, match="unknown MTAT split"):
        load_top50_split(tmp_path, "training")


def test_derivation_refuses_sources_that_are_not_the_literature_s(shared_data, tmp_path):
    folder = copy_split_sources(shared_data, tmp_path)
    train = load_pickled_str_list(folder / LIST_SOURCES["train"])
    (folder / LIST_SOURCES["train"]).write_bytes(pickle.dumps(train[:-1], protocol=0))
    with pytest.raises(ValueError, match="15243 paths .* expected 15244"):
        derive_top50_split(folder)
    (folder / LIST_SOURCES["train"]).write_bytes(pickle.dumps(train + [train[0].replace("/", "/x", 1)], protocol=0))
    with pytest.raises(ValueError, match="paths not in index_mtt.tsv"):
        derive_top50_split(folder)
    shutil.copyfile(shared_data / "mtat" / "jongpil" / LIST_SOURCES["train"], folder / LIST_SOURCES["train"])
    tags = (folder / TAGS_SOURCE).read_text().split()
    (folder / TAGS_SOURCE).write_text("\n".join(tags[:47] + tags[47:49][::-1] + tags[49:]) + "\n")  # unswapped
    with pytest.raises(ValueError, match="not the literature's 50 tags"):
        derive_top50_split(folder)
    assert not list(folder.glob("top50_*.tsv"))  # nothing written by a refused derivation


def test_a_missing_split_is_one_line_naming_the_command(tmp_path):
    with pytest.raises(MissingListError) as raised:
        load_top50_split(tmp_path, "train")
    assert str(raised.value) == (f"MagnaTagATune top-50 split needs its lists (top50_train.tsv is not in "
                                 f"{tmp_path / 'splits'}): run musiczoo download mtat --root DIR (or --lists-only)")


def test_synthetic_split_has_the_literature_s_proportions():
    assert part_sizes(21105) == {"train": 15244, "val": 1529, "test": 4332}
    assert part_sizes(200) == {"train": 144, "val": 15, "test": 41}
    assert part_sizes(3) == {"train": 1, "val": 1, "test": 1}
    with pytest.raises(ValueError, match="at least one clip per part"):
        part_sizes(2)


def test_restricted_unpickler_loads_str_list_and_refuses_globals(tmp_path):
    ok = tmp_path / "ok.cP"
    ok.write_bytes(pickle.dumps(["0/a-b-01-c-0-29.npy", "c/x.npy"], protocol=0))
    assert load_pickled_str_list(ok) == ["0/a-b-01-c-0-29.npy", "c/x.npy"]
    evil = tmp_path / "evil.cP"
    evil.write_bytes(pickle.dumps([Path("x")], protocol=0))  # needs find_class(pathlib, ...)
    with pytest.raises(ValueError, match=f"{re.escape(str(evil))}: not a pickled list of paths .*refusing"):
        load_pickled_str_list(evil)


# ---------------------------------------------------------------- annotations_final.csv
def test_top50_matrix_on_hand_checked_rows(tmp_path):
    header = list(reversed(MTAT_TAGS))  # columns are found by name, not position
    ones = {11: {"female voice", "guitar", "baroque"}, 12: {"metal", "no vocals", "choral"}, 13: set()}
    path = tmp_path / "annotations_final.csv"
    with open(path, "w") as f:
        f.write(_quoted(["clip_id", *header, "mp3_path"]))
        for cid, tags in ones.items():
            f.write(_quoted([cid, *(int(t in tags) for t in header), f"0/a-b-01-t{cid}-0-29.mp3"]))
    clip_ids, names, labels, paths = read_annotations(path)
    assert clip_ids.tolist() == [11, 12, 13] and names == header and labels.dtype == np.uint8
    assert labels.shape == (3, 188) and labels.sum() == 6 and paths[0] == "0/a-b-01-t11-0-29.mp3"

    y = top50_label_matrix(names, labels)
    expected = np.zeros((3, 50), np.float32)
    expected[0, [0, 48]] = 1  # guitar, female voice ("baroque" is not a top-50 tag)
    expected[1, [21, 47, 49]] = 1  # no vocals, metal, choral
    assert y.dtype == np.float32 and np.array_equal(y, expected)


def test_top50_matrix_missing_tag_is_an_error():
    names = [t for t in MTAT_TAGS if t != "female voice"]
    with pytest.raises(KeyError, match="female voice"):
        top50_label_matrix(names, np.zeros((1, len(names)), np.uint8))


def _row(cid, value="0", n_tags=188, path="0/x-y-01-z-0-29.mp3"):
    return _quoted([cid, *([value] * n_tags), path])


@pytest.mark.parametrize(
    "bad_row, line, message",
    [
        (_row(3, n_tags=187), 3, "189 columns, the header has 190"),
        (_row(3, value="2"), 3, "tag 'no voice' has value '2', expected 0 or 1"),
        (_row(3, value=""), 3, "tag 'no voice' has value '', expected 0 or 1"),
        (_row("x3"), 3, "clip_id 'x3' is not an integer"),
        (_row(2), 3, "clip_id 2 already on line 2"),
        (_row(3, path=""), 3, "empty mp3_path"),
        ('"3"\t"0"x"\n', 3, ""),  # broken quoting
    ],
)
def test_malformed_row_names_file_and_line(tmp_path, bad_row, line, message):
    path = tmp_path / "annotations_final.csv"
    path.write_text(_quoted(["clip_id", *MTAT_TAGS, "mp3_path"]) + _row(2) + bad_row)
    with pytest.raises(ValueError, match=re.escape(f"{path}:{line}: {message}")):
        read_annotations(path)


def test_header_without_mp3_path_or_comma_separated(tmp_path):
    path = tmp_path / "annotations_final.csv"
    path.write_text(_quoted(["clip_id", *MTAT_TAGS]))
    with pytest.raises(ValueError, match=re.escape(f"{path}:1: header has no 'mp3_path' column")):
        read_annotations(path)
    path.write_text(",".join(["clip_id", *MTAT_TAGS, "mp3_path"]) + "\n")  # not tab-separated
    with pytest.raises(ValueError, match=re.escape(f"{path}:1: header has no 'clip_id' or 'mp3_path'")):
        read_annotations(path)


# ---------------------------------------------------------------- synthetic releases
def test_synthetic_recipes_use_real_tag_names():
    from datamodules.synthetic_mtat_styles import (
        LEVEL_TAGS,
        STYLES,
        TEMPO_TAGS,
        VOICE_TAGS,
    )

    top50 = set(top50_tags())
    for style in STYLES.values():  # a misspelt tag would silently never be set
        assert set(style.tags) <= top50 and set(style.extra) <= set(MTAT_TAGS) - top50
    for table in (VOICE_TAGS, TEMPO_TAGS, LEVEL_TAGS):
        for top, other in table.values():
            assert set(top) <= top50 and set(other) <= set(MTAT_TAGS) - top50
    used = set().union(*(s.tags for s in STYLES.values()))
    used |= {t for table in (VOICE_TAGS, TEMPO_TAGS, LEVEL_TAGS) for top, _ in table.values() for t in top}
    assert used == top50  # every top-50 tag can be earned by some audio


def test_synthetic_annotations_raw_format(release):
    lines = (release / "annotations_final.csv").read_text().splitlines()
    fields = [line.split("\t") for line in lines]
    assert all(len(f) == 190 for f in fields)
    assert all(re.fullmatch(r'"[^"\t]*"', v) for f in fields for v in f)
    assert fields[0][0] == '"clip_id"' and fields[0][-1] == '"mp3_path"'
    assert all(v in ('"0"', '"1"') for f in fields[1:] for v in f[1:-1])


def test_synthetic_rows_match_files_and_split(release, parsed):
    clip_ids, names, labels, paths = parsed
    assert names == list(MTAT_TAGS)
    on_disk = {p.relative_to(release).as_posix() for p in release.rglob("*.mp3")}
    assert set(paths) == on_disk and len(paths) == 64  # 60 split clips + 4 outside the split
    assert clip_ids.tolist() == sorted(clip_ids.tolist())
    assert all(re.fullmatch(r"[0-9a-f]/[^/]+-\d+-\d+\.mp3", p) for p in paths)

    split = {c: (name, p) for name in ("train", "val", "test") for c, p in load_top50_split(release, name)}
    y = top50_label_matrix(names, labels)
    counts = {"train": 0, "val": 0, "test": 0}
    for cid, p, row in zip(clip_ids.tolist(), paths, y):
        if cid in split:
            counts[split[cid][0]] += 1
            assert p == split[cid][1] and row.sum() >= 1  # split clips all have a top-50 tag
        else:
            assert cid >= 60000 and row.sum() == 0  # like the clips the real split leaves out
    assert counts == part_sizes(60) == {"train": 43, "val": 5, "test": 12}
    assert all(re.fullmatch({"train": "[0-9ab]", "val": "c", "test": "[def]"}[name] + "/.*", p)
               for name, p in split.values())


def test_synthetic_audio_decodes_and_broken_files_do_not(release, parsed):
    _, _, _, paths = parsed
    broken = []
    for p in paths:
        decoded = _decode(release / p)
        if decoded is None:
            broken.append(release / p)
            continue
        y, sr = decoded
        assert sr == SR and y.ndim == 1 and abs(len(y) / sr - 2.0) < 0.1
        assert 0 < np.abs(y).max() < 1.5  # mp3 decoding may overshoot full scale a little, as on MTAT
    assert len(broken) == 3
    sizes = sorted(p.stat().st_size for p in broken)
    assert sizes[0] == 0 and sizes[-1] == 300  # both EMPTY and TRUNCATED, still listed


def test_synthetic_explicit_clip_ids(tmp_path):
    wanted = [(5, "0/a-b-01-c-0-29.mp3"), (9, "b/d-e-02-f-29-58.mp3"), (12, "c/g-h-01-i-0-29.mp3"),
              (20, "d/j-k-01-l-0-29.mp3"), (31, "f/m-n-03-o-58-87.mp3")]
    root = make_synthetic_mtat(tmp_path / "a", clip_ids=wanted, seconds=0.5, n_broken=0, n_unsplit=0)
    clip_ids, _, _, paths = read_annotations(root / "annotations_final.csv")
    assert list(zip(clip_ids.tolist(), paths)) == sorted(wanted)
    assert all(_decode(root / p) is not None for p in paths)
    assert [load_top50_split(root, part) for part in ("train", "val", "test")] == [wanted[:2], wanted[2:3], wanted[3:]]
    with pytest.raises(ValueError, match="not in an MTAT folder"):
        make_synthetic_mtat(tmp_path / "c", clip_ids=[(1, "x/a.mp3")], seconds=0.5)


def test_synthetic_is_deterministic(tmp_path):
    def tree(root):
        return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    kw = dict(n_clips=8, seconds=0.5, n_unsplit=1)
    a = tree(make_synthetic_mtat(tmp_path / "a", seed=3, workers=2, **kw))
    b = tree(make_synthetic_mtat(tmp_path / "b", seed=3, workers=1, **kw))
    c = tree(make_synthetic_mtat(tmp_path / "c", seed=4, **kw))
    assert a == b
    assert a["annotations_final.csv"] != c["annotations_final.csv"]


def _auc(scores: np.ndarray, y: np.ndarray) -> float:
    """ROC-AUC via the rank-sum (Mann-Whitney) statistic."""
    ranks = np.argsort(np.argsort(scores)) + 1
    pos = y == 1
    n, m = pos.sum(), (~pos).sum()
    return float((ranks[pos].sum() - n * (n + 1) / 2) / (n * m))


def test_synthetic_tags_follow_the_audio(release, parsed):
    clip_ids, names, labels, paths = parsed
    y50 = top50_label_matrix(names, labels)
    tags = top50_tags()
    feats, rms, keep = [], [], []
    edges = np.unique(np.geomspace(2, 257, 33).astype(int))
    for i, p in enumerate(paths):
        decoded = _decode(release / p)
        if decoded is None:
            continue
        x = decoded[0]
        frames = x[: len(x) // 512 * 512].reshape(-1, 512) * np.hanning(512)
        bands = np.log(np.add.reduceat(np.abs(np.fft.rfft(frames)) ** 2, edges[:-1], axis=1) + 1e-8)
        feats.append(np.concatenate([bands.mean(0), bands.std(0)]))
        rms.append(np.sqrt(np.mean(x**2)))
        keep.append(i)
    X, rms, Y, ids = np.array(feats), np.array(rms), y50[keep], clip_ids[keep]

    loud, quiet = Y[:, tags.index("loud")] == 1, Y[:, tags.index("quiet")] == 1
    assert loud.sum() >= 3 and quiet.sum() >= 3
    assert rms[loud].mean() > 3 * rms[quiet].mean()

    # A difference-of-centroids linear scorer on log band energies, fit on the train clips,
    # must rank held-out clips well above chance, and far better than with shuffled labels.
    train = np.isin(ids, [c for c, _ in load_top50_split(release, "train")])
    mu, sd = X[train].mean(0), X[train].std(0) + 1e-6
    Z = (X - mu) / sd
    rng = np.random.default_rng(0)
    real, shuffled = [], []
    for j in range(50):
        y_tr, y_te = Y[train, j], Y[~train, j]
        if y_tr.sum() < 3 or not 2 <= y_te.sum() < len(y_te):
            continue
        for labels_tr, out in ((y_tr, real), (rng.permutation(y_tr), shuffled)):
            w = Z[train][labels_tr == 1].mean(0) - Z[train][labels_tr == 0].mean(0)
            out.append(_auc(Z[~train] @ w, y_te))
    assert len(real) >= 15
    assert np.mean(real) > 0.7 and np.mean(real) > np.mean(shuffled) + 0.15
