"""datamodules.verify on small synthetic copies in the real layouts, whole and damaged."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from datamodules.gtzan import GENRES, find_gtzan, split_list
from datamodules.mtat_format import ANNOTATIONS_FILE, read_annotations
from datamodules.mtat_split import load_top50_split
from datamodules.synthetic_mtat import UNSPLIT_CLIP_ID_START, make_synthetic_mtat
from datamodules.verify import (
    KNOWN_FAULTY,
    MTAT_FOLDER_CLIPS,
    MTAT_KNOWN_FAULTY,
    verify,
)

JAZZ_54 = "jazz/jazz.00054.wav"
EMPTY = "empty file (0 bytes)"
NOT_AUDIO = "cannot read audio: truncated, corrupt or not audio (libsndfile: "
FULL = {g: (100, 100) for g in GENRES}


def check(dataset: str, root: Path):
    return verify(dataset, root, workers=2, progress=False)


def copy_of(tree: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tree, tmp_path / "copy"))


def split_files() -> set[str]:
    return {e for part in ("train", "val", "test") for e in split_list("fault_filtered", part)}


# ----------------------------------------------------------------------------------------------
# GTZAN
# ----------------------------------------------------------------------------------------------
def test_gtzan_complete_rerelease_is_usable_with_its_known_fault(gtzan_rerelease):
    report = check("gtzan", gtzan_rerelease)
    print(f"\n{report.files_checked} GTZAN files, 2 workers: {report.files_per_second:.0f} files/s")
    assert report.usable and report.not_usable_because == []
    assert report.files_checked == 1000
    assert report.counts == FULL
    assert report.missing == [] and report.extra == []
    assert report.unreadable == [(JAZZ_54, EMPTY)]
    assert report.known_faulty == [(JAZZ_54, KNOWN_FAULTY[JAZZ_54])]
    assert report.problems == [f"known fault: {JAZZ_54}: {EMPTY} ({KNOWN_FAULTY[JAZZ_54]})"]
    assert report.layout.startswith(f"{gtzan_rerelease / 'genres_original'} (re-release, <genre>/<genre>.000NN.wav)")
    assert report.files_per_second == pytest.approx(1000 / report.seconds)
    lines = report.summary().splitlines()
    assert lines[1:3] == ["folder       found  expected", "blues          100       100"]
    assert lines[12] == "total         1000      1000"
    assert lines[-2:] == report.problems[-1:] + ["usable: yes"]


def test_gtzan_original_au_layout(gtzan_original):
    report = check("gtzan", gtzan_original)
    assert report.usable
    assert report.layout.startswith(f"{gtzan_original / 'genres'} (original tarball, <genre>/<genre>.000NN.au)")
    assert (report.files_checked, report.counts, report.missing, report.extra) == (1000, FULL, [], [])
    assert report.unreadable == report.known_faulty == report.problems == []


def test_gtzan_missing_genre_folder_is_unusable(gtzan_rerelease, tmp_path):
    root = copy_of(gtzan_rerelease, tmp_path)
    shutil.rmtree(root / "genres_original" / "rock")  # find_gtzan alone would refuse this tree
    report = check("gtzan", root)
    rock = [f"rock/rock.{i:05d}.wav" for i in range(100)]
    assert not report.usable
    assert report.missing == rock and report.extra == []
    assert report.counts == {**FULL, "rock": (0, 100)}
    assert report.files_checked == 900
    assert report.problems[:2] == [
        "genre folders missing: rock/",
        "missing 100 of 1000 clips: " + ", ".join(rock[:10]) + ", ... (90 more)",
    ]
    assert set(rock) <= split_files()  # GTZAN's split uses every rock clip
    assert report.not_usable_because == ["100 files of the fault_filtered split missing"]
    assert report.summary().splitlines()[-1] == "usable: NO (100 files of the fault_filtered split missing)"


def test_gtzan_missing_file_outside_the_split_and_extra_files_leave_it_usable(gtzan_rerelease, tmp_path):
    root = copy_of(gtzan_rerelease, tmp_path)
    unused = min({f"{g}/{g}.{i:05d}.wav" for g in GENRES for i in range(100)} - split_files())  # 70 are left out
    (root / "genres_original" / unused).unlink()
    (root / "genres_original" / "pop" / "notes.txt").write_text("not a clip")
    (root / "genres_original" / "pop" / "._pop.00000.wav").write_bytes(b"macOS resource fork")  # hidden: ignored
    report = check("gtzan", root)
    assert report.usable
    assert report.missing == [unused] and report.extra == ["pop/notes.txt"]
    assert report.counts == {**FULL, unused.split("/")[0]: (99, 100)}
    assert report.files_checked == 999
    assert report.problems[:2] == [f"missing 1 of 1000 clips: {unused}", "1 unexpected file in the genre folders: pop/notes.txt"]


def test_gtzan_corrupt_split_file_is_named_with_its_reason(gtzan_rerelease, tmp_path):
    root = copy_of(gtzan_rerelease, tmp_path)
    corrupt = split_list("fault_filtered", "train")[0]
    assert corrupt == "blues/blues.00029.wav" and corrupt not in KNOWN_FAULTY
    (root / "genres_original" / corrupt).write_bytes(np.random.default_rng(0).bytes(4096))
    report = check("gtzan", root)
    assert not report.usable
    assert [p for p, _ in report.unreadable] == [corrupt, JAZZ_54]
    assert report.unreadable[0][1].startswith(NOT_AUDIO)
    assert str(root) not in report.unreadable[0][1]  # the reason does not repeat the file's path
    assert report.known_faulty == [(JAZZ_54, KNOWN_FAULTY[JAZZ_54])]
    assert report.problems == [f"known fault: {JAZZ_54}: {EMPTY} ({KNOWN_FAULTY[JAZZ_54]})",
                               f"unreadable: {corrupt}: {report.unreadable[0][1]}"]
    assert report.not_usable_because == ["1 unreadable file that is not a known fault"]


def test_gtzan_without_any_layout_raises_find_gtzans_error(tmp_path):
    (tmp_path / "README.txt").write_text("nothing here")
    with pytest.raises(FileNotFoundError) as expected:
        find_gtzan(tmp_path)
    with pytest.raises(FileNotFoundError) as got:
        check("gtzan", tmp_path)
    assert str(got.value) == str(expected.value)
    assert str(got.value).endswith("found 1 entries: README.txt")
    with pytest.raises(FileNotFoundError, match=r"found nothing \(no such folder\)"):
        check("gtzan", tmp_path / "absent")


def test_bad_arguments():
    with pytest.raises(ValueError, match="dataset must be one of"):
        verify("gtzan_v2", ".")
    with pytest.raises(ValueError, match="workers must be at least 1"):
        verify("gtzan", ".", workers=0)


# ----------------------------------------------------------------------------------------------
# MagnaTagATune
# ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mtat_release(tmp_path_factory) -> Path:
    """200 split clips + 4 outside the split; 2 split clips broken (one empty, one truncated):
    exactly 1% of the split, the most an MTAT copy may have unreadable and still be usable."""
    root = tmp_path_factory.mktemp("mtat")
    return make_synthetic_mtat(root, n_clips=200, seconds=1.0, sample_rate=8000, n_broken=2)


def release_files(root: Path) -> tuple[list[str], list[str]]:
    """(all mp3 paths the annotations list, the broken ones: 0 or 300 bytes as written)."""
    listed = read_annotations(root / ANNOTATIONS_FILE)[3]
    return listed, sorted(p for p in listed if (root / p).stat().st_size in (0, 300))


def test_mtat_synthetic_release_is_usable_and_incomplete(mtat_release):
    listed, broken = release_files(mtat_release)
    report = check("mtat", mtat_release)
    assert report.usable and report.not_usable_because == []
    assert report.files_checked == len(listed) == 204
    assert report.counts == {f: (sum(p.startswith(f + "/") for p in listed), n) for f, n in MTAT_FOLDER_CLIPS.items()}
    assert report.missing == [] and report.extra == [] and report.known_faulty == []
    assert len(broken) == 2
    assert sorted(p for p, _ in report.unreadable) == broken
    reasons = dict(report.unreadable)
    empty, truncated = sorted(broken, key=lambda p: (mtat_release / p).stat().st_size)
    assert reasons[empty] == EMPTY
    assert reasons[truncated].startswith(NOT_AUDIO)
    assert report.problems[0] == "incomplete: 204 of 25,863 clips (the real release's count; per folder above)"
    assert report.problems[1:] == [f"unreadable: {p}: {reasons[p]}" for p, _ in report.unreadable]
    assert report.summary().splitlines()[-1] == "usable: yes"


def test_mtat_one_more_unreadable_split_file_is_damaged(mtat_release, tmp_path):
    root = copy_of(mtat_release, tmp_path)
    listed, broken = release_files(root)
    split = {p for part in ("train", "val", "test") for _, p in load_top50_split(root, part)}
    third = next(p for p in listed if p in split and p not in broken)
    (root / third).write_bytes(b"")
    report = check("mtat", root)
    assert sorted(p for p, _ in report.unreadable) == sorted(broken + [third])
    assert not report.usable
    assert report.not_usable_because == ["3 of the 200 split files unreadable (more than 1%): the copy looks damaged"]


def test_mtat_known_empty_file_is_named_as_known(mtat_release, tmp_path):
    root = copy_of(mtat_release, tmp_path)
    known = "6/norine_braun-now_and_zen-08-gently-117-146.mp3"
    (root / known).write_bytes(b"")  # not in this release's annotations: also an extra file
    report = check("mtat", root)
    assert report.usable
    assert report.known_faulty == [(known, MTAT_KNOWN_FAULTY[known])]
    assert (known, EMPTY) in report.unreadable and len(report.unreadable) == 3
    assert report.extra == [known]
    assert report.files_checked == 205
    assert f"known fault: {known}: {EMPTY} ({MTAT_KNOWN_FAULTY[known]})" in report.problems


def test_mtat_missing_split_file_is_unusable(mtat_release, tmp_path):
    root = copy_of(mtat_release, tmp_path)
    listed, broken = release_files(root)
    gone = next(p for p in listed if p not in broken)
    (root / gone).unlink()
    report = check("mtat", root)
    assert not report.usable
    assert report.missing == [gone] and report.files_checked == 203
    assert f"missing 1 of the 204 clips {ANNOTATIONS_FILE} lists: {gone}" in report.problems
    assert report.not_usable_because == ["1 mp3 file of the top-50 split missing"]


def test_mtat_annotations_missing_or_malformed_is_unusable(mtat_release, tmp_path):
    root = copy_of(mtat_release, tmp_path)
    (root / ANNOTATIONS_FILE).unlink()
    report = check("mtat", root)
    assert not report.usable
    assert report.not_usable_because == [f"{ANNOTATIONS_FILE} missing"]
    assert f"{ANNOTATIONS_FILE} is missing: no labels, and nothing to check the mp3 files against" in report.problems
    assert report.files_checked == 204 and report.missing == [] and report.extra == []
    assert report.summary().splitlines()[-1] == f"usable: NO ({ANNOTATIONS_FILE} missing)"

    (root / ANNOTATIONS_FILE).write_text('"clip_id"\t"rock"\n"1"\t"0"\n')
    report = check("mtat", root)
    assert report.not_usable_because == [f"{ANNOTATIONS_FILE} unreadable"]
    assert f"{ANNOTATIONS_FILE} is unreadable: {root / ANNOTATIONS_FILE}:1: header has no 'mp3_path' column " \
           "(is this MagnaTagATune's tab-separated annotations_final.csv?)" in report.problems


def test_mtat_annotations_of_another_release_are_unusable(mtat_release, tmp_path):
    root = copy_of(mtat_release, tmp_path)
    annotations = root / ANNOTATIONS_FILE
    listed, _ = release_files(root)
    split = {p for part in ("train", "val", "test") for _, p in load_top50_split(root, part)}
    renamed = next(p for p in listed if p in split)
    annotations.write_text(annotations.read_text().replace(renamed, "0/elsewhere-0-29.mp3"))
    report = check("mtat", root)
    assert report.not_usable_because == [
        f"{ANNOTATIONS_FILE} gives 1 split clip another mp3_path: the annotations belong to another release"]
    assert report.missing == ["0/elsewhere-0-29.mp3"] and report.extra == [renamed]

    header, *rows = annotations.read_text().splitlines(keepends=True)
    unsplit = [r for r in rows if int(r.split("\t")[0].strip('"')) >= UNSPLIT_CLIP_ID_START]
    assert len(unsplit) == 4
    annotations.write_text(header + "".join(unsplit))
    assert check("mtat", root).not_usable_because == [f"{ANNOTATIONS_FILE} lists none of the clips of the top-50 split"]


def test_mtat_in_process_decoding_agrees_with_workers(mtat_release):
    one = verify("mtat", mtat_release, workers=1, progress=False)
    two = check("mtat", mtat_release)
    assert (one.unreadable, one.counts, one.usable) == (two.unreadable, two.counts, two.usable)


def test_mtat_root_without_a_release_says_what_it_found(tmp_path):
    (tmp_path / "mp3.zip.001").write_bytes(b"")
    (tmp_path / "clip_info_final.csv").write_text("")
    with pytest.raises(FileNotFoundError) as got:
        check("mtat", tmp_path)
    assert str(got.value) == (
        f"no MagnaTagATune data under {tmp_path}: expected {ANNOTATIONS_FILE} and the mp3 folders 0..f "
        "(as unpacked from mp3.zip.001-003) directly in it; found 2 entries: clip_info_final.csv, mp3.zip.001")
    with pytest.raises(FileNotFoundError, match=r"found nothing \(no such folder\)$"):
        check("mtat", tmp_path / "absent")


def test_mtat_without_its_split_lists_is_unusable_and_says_how_to_fetch_them(mtat_release, tmp_path):
    root = copy_of(mtat_release, tmp_path)
    shutil.rmtree(root / "splits")
    report = check("mtat", root)
    assert report.not_usable_because == [
        f"MagnaTagATune top-50 split needs its lists (top50_train.tsv is not in {root / 'splits'}): "
        f"run musiczoo download mtat --root DIR (or --lists-only)"]
