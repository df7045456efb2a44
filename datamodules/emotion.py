"""Music emotion recognition: valence and arousal of a clip, regressed (DEAM, PMEmo, any CSV).

Every emotion data module serves its targets on **one scale**, :data:`SCALE`: DEAM's 1-9, the
nine-point Self-Assessment Manikin on which DEAM's static song-level annotations were rated
(1 = most negative / calmest, 9 = most positive / most excited, 5 neutral). Data on another
scale is mapped onto it linearly (PMEmo's 0-1 as ``v * 8 + 1``), so that a model, its metrics
and its predictions mean the same on every dataset; R^2, Pearson r and CCC do not change
under such a map, absolute errors are in SAM points.

Each declares that scale as ``target_scale``, which the CLI links into the model's spec. The
three share one reader (:func:`read_annotations`: a CSV of clips and numeric columns, its bad
rows skipped with a warning naming the song, the file and the problem, and one count at the
end) and one seeded split (:func:`random_parts`).
"""

from __future__ import annotations

import csv
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .base import AudioDataModule
from .items import Item, check_fractions, random_parts

log = logging.getLogger(__name__)

#: The scale of every emotion target served: DEAM's nine-point Self-Assessment Manikin.
SCALE = (1.0, 9.0)
#: The targets of DEAM and PMEmo, in this order.
VALENCE_AROUSAL = ("valence", "arousal")
#: Seeded random parts where a dataset publishes no split (PMEmo, a CSV without a split column).
VAL_FRACTION, TEST_FRACTION = 0.1, 0.2

#: DEAM's layout (Aljanaki, Yang & Soleymani 2017): the static annotations averaged per song
#: (songs 1-2000: the 2013 and 2014 sets; 2001-2058: the 2015 evaluation set) and the audio.
DEAM_ANNOTATIONS = Path("annotations", "annotations averaged per song", "song_level")
DEAM_DEV_CSV = "static_annotations_averaged_songs_1_2000.csv"
DEAM_TEST_CSV = "static_annotations_averaged_songs_2000_2058.csv"
DEAM_AUDIO = "MEMD_audio"
DEAM_ID, DEAM_COLUMNS = "song_id", {"valence": "valence_mean", "arousal": "arousal_mean"}
#: PMEmo2019's layout (Zhang et al. 2018): static annotations on a 0-1 scale and the chorus clips.
PMEMO_CSV, PMEMO_AUDIO = Path("annotations", "static_annotations.csv"), "chorus"
PMEMO_ID, PMEMO_COLUMNS = "musicId", {"valence": "Valence(mean)", "arousal": "Arousal(mean)"}
PMEMO_SCALE = (0.0, 1.0)
#: Values of a CSV's split column, and the part each names.
SPLIT_VALUES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}


def to_scale(value: float, scale: tuple[float, float]) -> float:
    """``value`` on ``scale`` (low, high) mapped linearly onto :data:`SCALE`."""
    low, high = scale
    return SCALE[0] + (value - low) / (high - low) * (SCALE[1] - SCALE[0])


def _check_scale(scale) -> tuple[float, float]:
    low, high = (float(v) for v in scale)
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ValueError(f"a scale is (low, high) with low < high, got {tuple(scale)}")
    return low, high


@dataclass
class Annotations:
    """What :func:`read_annotations` found: the usable clips (with the part a split column names,
    else None), the rows skipped as ``"<song> (<file>): <problem>"``, and the rows read."""

    items: list[Item] = field(default_factory=list)
    parts: list[str | None] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    rows: int = 0


def read_annotations(path: Path, id_column: str, columns: dict[str, str], scale: tuple[float, float],
                     audio_of: Callable[[str], Path], root: Path, split_column: str | None = None,
                     part: str | None = None, into: Annotations | None = None) -> Annotations:
    """The clips of one annotation CSV, their targets mapped from ``scale`` onto :data:`SCALE`.

    Header names and values are stripped (DEAM's headers have a space after each comma).
    ``columns`` maps each target name to its column; ``audio_of(id)`` is the clip's file; clip
    keys are those files relative to ``root``. A row whose id is empty, whose target is
    missing, empty, not a finite number or outside ``scale``, whose split value is unknown,
    whose audio file is missing, or whose file was listed before is skipped and described in
    ``skipped``. A file without a needed column is a ``ValueError`` naming the file and the
    columns. ``part`` is the part of every row (DEAM's test file), where no ``split_column``
    names one; ``into`` collects several files into one result (DEAM's two).
    """
    found = into if into is not None else Annotations()
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such annotation file")
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = [name.strip() for name in next(reader, [])]
        needed = [id_column, *columns.values(), *([split_column] if split_column else [])]
        missing = [name for name in needed if name not in header]
        if missing:
            raise ValueError(f"{path}: missing column(s) {', '.join(map(repr, missing))}; its columns are "
                             f"{', '.join(map(repr, header)) or 'none (empty file)'}")
        at = {name: header.index(name) for name in needed}
        seen = {it.key for it in found.items}
        for line, row in enumerate(reader, start=2):
            if not any(cell.strip() for cell in row):
                continue
            found.rows += 1
            cell = {name: row[i].strip() if i < len(row) else "" for name, i in at.items()}
            song, where = cell[id_column], f"{path.name}, line {line}"
            problem, values, named = _row_problem(cell, id_column, columns, scale, split_column)
            if not problem:
                audio = audio_of(song)
                key = audio.relative_to(root).as_posix() if audio.is_relative_to(root) else str(audio)
                if not audio.is_file():
                    problem, where = "no audio file", str(audio)
                elif key in seen:
                    problem = f"{key} is listed before; the first row is kept"
            if problem:
                found.skipped.append(f"{song or '(no id)'} ({where}): {problem}")
                continue
            seen.add(key)
            found.items.append(Item(key, str(audio), [to_scale(v, scale) for v in values]))
            found.parts.append(named or part)
    return found


def _row_problem(cell: dict[str, str], id_column: str, columns: dict[str, str], scale: tuple[float, float],
                 split_column: str | None) -> tuple[str | None, list[float], str | None]:
    """(what is wrong with a row, or None; its target values; the part its split column names)."""
    if not cell[id_column]:
        return f"{id_column} is empty", [], None
    values = []
    for column in columns.values():
        text = cell[column]
        try:
            value = float(text)
        except ValueError:
            return (f"{column} {text!r} is not a number" if text else f"{column} is empty"), [], None
        if not math.isfinite(value):
            return f"{column} is {text!r}", [], None
        if not scale[0] <= value <= scale[1]:
            return f"{column} {value:g} is outside the scale {scale[0]:g}-{scale[1]:g}", [], None
        values.append(value)
    part = SPLIT_VALUES.get(cell[split_column].lower()) if split_column else None
    if split_column and part is None:
        return f"{split_column} {cell[split_column]!r} is not one of train, val, test", [], None
    return None, values, part


class EmotionDataModule(AudioDataModule):
    """What the emotion data modules share: ``task = "regression"``, targets on :data:`SCALE`
    (declared as ``target_scale``, which the CLI links into the model's spec) named by
    ``label_names`` (valence, then arousal, unless a subclass says otherwise), one count of the
    songs skipped, and the seeded random split.

    The other arguments are :class:`~datamodules.base.AudioDataModule`'s.
    """

    task = "regression"
    #: The scale of every target served (DEAM's 1-9 SAM scale), whatever the source's own.
    target_scale = SCALE

    def __init__(self, root: str, **kwargs):
        super().__init__(root, **kwargs)
        self.label_names = list(VALENCE_AROUSAL)

    def report(self, found: Annotations, files: str) -> list[Item]:
        """The usable items of ``found``; one warning per skipped song and one count of them."""
        for entry in found.skipped:
            log.warning("%s: skipping song %s", self.dataset_name, entry)
        if found.skipped:
            log.warning("%s: skipped %d of %d songs: %s", self.dataset_name, len(found.skipped), found.rows,
                        ", ".join(e.split(" (", 1)[0] for e in found.skipped[:10])
                        + (", ..." if len(found.skipped) > 10 else ""))
        if not found.items:
            raise ValueError(f"{files}: no usable song ({len(found.skipped)} of {found.rows} rows skipped)")
        return found.items

    def random_split(self, items: list[Item], val_fraction: float, test_fraction: float = 0.0) -> dict[str, list[Item]]:
        return random_parts(items, {"val": val_fraction, "test": test_fraction}, self.seed)


def _find_csv(root: Path, names: list[Path], what: str) -> list[Path]:
    """The first folder (``root/<nested>`` or ``root``) holding all of ``names``, as paths."""
    for folder in (root / names[0].parent, root):
        if all((folder / name.name).is_file() for name in names):
            return [folder / name.name for name in names]
    raise FileNotFoundError(f"no {what} annotations under {root}: expected "
                            f"{' and '.join(name.name for name in names)} in {root / names[0].parent} or in {root}")


class DEAMDataModule(EmotionDataModule):
    """DEAM (MediaEval Database for Emotional Analysis in Music), static valence and arousal per song.

    ``root`` is the dataset as distributed: ``MEMD_audio/<song_id>.mp3`` and the static annotations
    averaged per song (``static_annotations_averaged_songs_1_2000.csv`` and
    ``..._2000_2058.csv``, columns ``song_id, valence_mean, valence_std, arousal_mean,
    arousal_std`` with a space after each comma) in ``annotations/annotations averaged per
    song/song_level/``; the two CSVs may also lie directly in ``root``. Targets: valence then
    arousal, already on the 1-9 scale.

    Split: DEAM's published one where it exists: the 2015 evaluation songs (the ``2000_2058``
    file, song ids 2001-2058) are the test part; songs 1-2000 are split at random into
    training and validation (``val_fraction``, drawn with ``seed``), as ``split_name`` says.
    A song whose valence or arousal mean is missing, empty or not a number, or whose mp3 is
    missing, is skipped with a warning naming it and its file, and counted.

    Args:
        root: the DEAM folder.
        val_fraction: share of songs 1-2000 held out for validation.
    """

    dataset_name = "deam"

    def __init__(self, root: str, val_fraction: float = VAL_FRACTION, **kwargs):
        super().__init__(root, **kwargs)
        self.val_fraction = float(val_fraction)
        check_fractions({"val": self.val_fraction})

    @property
    def split_name(self) -> str:
        return f"deam2015test+random(val={self.val_fraction:g},seed={self.seed})"

    def split_items(self) -> dict[str, list[Item]]:
        dev, test = _find_csv(self.root, [DEAM_ANNOTATIONS / DEAM_DEV_CSV, DEAM_ANNOTATIONS / DEAM_TEST_CSV], "DEAM")
        found = read_annotations(dev, DEAM_ID, DEAM_COLUMNS, SCALE, self._audio, self.root)
        read_annotations(test, DEAM_ID, DEAM_COLUMNS, SCALE, self._audio, self.root, part="test", into=found)
        items = self.report(found, f"{dev} and {test.name}")
        parts = self.random_split([it for it, part in zip(items, found.parts) if part is None], self.val_fraction)
        return {**parts, "test": [it for it, part in zip(items, found.parts) if part == "test"]}

    def _audio(self, song: str) -> Path:
        """``MEMD_audio/<song_id>.mp3``; an id written as ``2.0`` names ``2.mp3``."""
        try:
            number = float(song)
            song = str(int(number)) if number.is_integer() else song
        except ValueError:
            pass
        return self.root / DEAM_AUDIO / f"{song}.mp3"


class PMEmoDataModule(EmotionDataModule):
    """PMEmo2019 (Zhang et al., ICMR 2018): the chorus of 794 pop songs, static valence and arousal.

    ``root`` is the dataset as distributed: ``chorus/<musicId>.mp3`` and
    ``annotations/static_annotations.csv`` (columns ``musicId, Arousal(mean), Valence(mean)``,
    on a 0-1 scale); the CSV may also lie directly in ``root``. Targets: valence then arousal,
    mapped from 0-1 onto the 1-9 scale (``v * 8 + 1``). PMEmo publishes no split: the songs are
    split at random (``val_fraction``, ``test_fraction``, drawn with ``seed``), as
    ``split_name`` says. Bad rows and missing mp3 files are skipped as for DEAM.
    """

    dataset_name = "pmemo"

    def __init__(self, root: str, val_fraction: float = VAL_FRACTION, test_fraction: float = TEST_FRACTION, **kwargs):
        super().__init__(root, **kwargs)
        self.val_fraction, self.test_fraction = float(val_fraction), float(test_fraction)
        check_fractions({"val": self.val_fraction, "test": self.test_fraction})

    @property
    def split_name(self) -> str:
        return f"random(val={self.val_fraction:g},test={self.test_fraction:g},seed={self.seed})"

    def split_items(self) -> dict[str, list[Item]]:
        (path,) = _find_csv(self.root, [PMEMO_CSV], "PMEmo")
        found = read_annotations(path, PMEMO_ID, PMEMO_COLUMNS, PMEMO_SCALE,
                                 lambda song: self.root / PMEMO_AUDIO / f"{song}.mp3", self.root)
        return self.random_split(self.report(found, str(path)), self.val_fraction, self.test_fraction)


class EmotionCSVDataModule(EmotionDataModule):
    """Any folder with a CSV of file names and numeric columns: your own emotion dataset.

    ``csv`` (relative to ``root``, or absolute) has a column of audio files relative to
    ``root`` (``file_column``) and one numeric column per target (``targets``, which are also
    the targets' names), given on the CSV's own scale ``scale`` (low, high) and mapped
    linearly onto the 1-9 scale that every emotion data module serves (``target_scale``). With
    ``split_column`` its values (``train``, ``val`` or ``valid``, ``test``) are the split;
    without, a seeded random one (``val_fraction``, ``test_fraction``). Bad rows and missing
    files are skipped as for DEAM.

    Args:
        root: the folder the files are relative to.
        csv: the annotation file.
        file_column: the column of file names.
        targets: the target columns, e.g. ``["valence", "arousal"]``.
        scale: the scale of the CSV's values (default 1-9: nothing to map).
        split_column: a column naming each file's part, or None for a random split.
    """

    dataset_name = "emotion_csv"

    def __init__(self, root: str, csv: str, file_column: str = "file", targets: list[str] = list(VALENCE_AROUSAL),
                 scale: tuple[float, float] = SCALE, split_column: str | None = None,
                 val_fraction: float = VAL_FRACTION, test_fraction: float = TEST_FRACTION, **kwargs):
        super().__init__(root, **kwargs)
        if not targets or len(set(targets)) != len(targets):
            raise ValueError(f"targets must be distinct column names, at least one, got {list(targets)}")
        self.label_names = list(targets)
        self.csv = self.root / Path(csv).expanduser()
        self.file_column, self.split_column = file_column, split_column
        self.csv_scale = _check_scale(scale)
        self.val_fraction, self.test_fraction = float(val_fraction), float(test_fraction)
        check_fractions({"val": self.val_fraction, "test": self.test_fraction})

    @property
    def split_name(self) -> str:
        if self.split_column:
            return f"column:{self.split_column}"
        return f"random(val={self.val_fraction:g},test={self.test_fraction:g},seed={self.seed})"

    def split_items(self) -> dict[str, list[Item]]:
        found = read_annotations(self.csv, self.file_column, {t: t for t in self.label_names}, self.csv_scale,
                                 lambda name: self.root / name, self.root, split_column=self.split_column)
        items = self.report(found, str(self.csv))
        if not self.split_column:
            return self.random_split(items, self.val_fraction, self.test_fraction)
        return {name: [it for it, part in zip(items, found.parts) if part == name] for name in ("train", "val", "test")}
