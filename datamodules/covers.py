"""Version identification ("cover song" recognition): performances grouped by the work they perform.

Every such dataset is a **clique table**: one row per performance, ``work_id, performance_id,
file`` (a work with several performances is a clique). :func:`read_clique_table` reads the
table as a CSV or TSV, under the column names of the common releases:

- this project's own (and ``musiczoo synth covers``'): ``work_id, performance_id, file``;
- Da-TACOS (Yesiler et al. 2019): ``work_id`` ``W_...``, ``performance_id`` ``P_...``, the audio
  at ``<work_id>/<performance_id>.<ext>`` where no file column is given (its feature files are
  laid out so);
- SHS100K (Xu et al. 2018): ``set_id`` and ``ver_id``, tab-separated, files as for Da-TACOS.

Covers80 (Ellis 2007) is read from its own lists (:func:`read_covers80`): ``list1.list`` and
``list2.list`` name one performance of each of the 80 works per line, the same line of the two
being the same work, as ``<work folder>/<performance>`` under ``covers32k/``, the mp3 files.

The split is by work (no work in two parts: a model is evaluated on works it never heard), seeded,
or a table's ``split`` column. Targets are work indices: the training works first, in id order,
which are the classes the head learns (``label_names``), then the validation and test works.
"""

from __future__ import annotations

import csv
import logging
import random
from pathlib import Path

from torch.utils.data import Sampler

from .base import AudioDataModule
from .emotion import SPLIT_VALUES
from .items import Item, check_fractions, random_parts
from .primitives.audio_files import AUDIO_EXTENSIONS
from .windows import CropDataset, collate_batch

log = logging.getLogger(__name__)

#: Accepted names of each column, in order of preference (lower-cased, stripped).
WORK_COLUMNS = ("work_id", "work", "clique_id", "clique", "set_id")
PERFORMANCE_COLUMNS = ("performance_id", "performance", "version_id", "ver_id", "perf_id")
FILE_COLUMNS = ("file", "path", "audio", "filename")
SPLIT_COLUMN = "split"
COVERS80_LISTS = ("list1.list", "list2.list")
COVERS80_AUDIO = "covers32k"
VAL_FRACTION, TEST_FRACTION = 0.15, 0.15


def _column(header: list[str], names: tuple[str, ...]) -> int | None:
    for name in names:
        if name in header:
            return header.index(name)
    return None


def _audio_under(folder: Path, stem: str) -> Path | None:
    """``folder/stem`` with the first audio extension that exists, or None."""
    for ext in AUDIO_EXTENSIONS:
        path = folder / f"{stem}{ext}"
        if path.is_file():
            return path
    return None


class CliqueTable:
    """What a clique table holds after reading: ``rows`` as (work, performance, file, part), the rows
    skipped as ``"<performance> (<where>): <problem>"``, and how many rows there were."""

    def __init__(self):
        self.rows: list[tuple[str, str, Path, str | None]] = []
        self.skipped: list[str] = []
        self.read = 0
        self._seen: set[tuple[str, str]] = set()  # (work, performance) of the rows, for repeats

    def add(self, work: str, performance: str, file: Path | None, where: str, part: str | None = None) -> None:
        self.read += 1
        problem = ("work_id is empty" if not work else "performance_id is empty" if not performance
                   else "no audio file" if file is None or not file.is_file()
                   else f"performance {performance} of work {work} is listed before; the first row is kept"
                   if (work, performance) in self._seen else None)
        if problem:
            self.skipped.append(f"{performance or '(no id)'} ({file if problem == 'no audio file' and file else where}): "
                                f"{problem}")
        else:
            self.rows.append((work, performance, file, part))
            self._seen.add((work, performance))

    def works(self) -> dict[str, int]:
        """Performances per work."""
        counts: dict[str, int] = {}
        for work, *_ in self.rows:
            counts[work] = counts.get(work, 0) + 1
        return counts


def read_clique_table(path: Path, audio_root: Path) -> CliqueTable:
    """The performances of a CSV or TSV clique table (see the module docstring for its columns).

    The delimiter is the header's (a tab, else a comma). A relative file is relative to
    ``audio_root``; without a file column, it is ``audio_root/<work>/<performance>.<ext>`` with any
    audio extension. A row with an empty id, a missing file, a repeated (work, performance) or an
    unknown ``split`` value is skipped and described; a table without a work or performance
    column is a ``ValueError`` naming the file and its columns.
    """
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such clique table")
    table = CliqueTable()
    with open(path, newline="", encoding="utf-8-sig") as f:
        first = f.readline()
        f.seek(0)
        reader = csv.reader(f, delimiter="\t" if "\t" in first else ",")
        header = [name.strip().lower() for name in next(reader, [])]
        work_at, perf_at = _column(header, WORK_COLUMNS), _column(header, PERFORMANCE_COLUMNS)
        file_at, split_at = _column(header, FILE_COLUMNS), _column(header, (SPLIT_COLUMN,))
        if work_at is None or perf_at is None:
            raise ValueError(f"{path}: a clique table needs a work column ({' or '.join(WORK_COLUMNS)}) and a "
                             f"performance column ({' or '.join(PERFORMANCE_COLUMNS)}); its columns are "
                             f"{', '.join(map(repr, header)) or 'none (empty file)'}")
        for line, row in enumerate(reader, start=2):
            if not any(cell.strip() for cell in row):
                continue
            cell = lambda i: row[i].strip() if i is not None and i < len(row) else ""  # noqa: E731
            work, performance, where = cell(work_at), cell(perf_at), f"{path.name}, line {line}"
            part = SPLIT_VALUES.get(cell(split_at).lower()) if split_at is not None else None
            if split_at is not None and part is None:
                table.read += 1
                table.skipped.append(f"{performance} ({where}): split {cell(split_at)!r} is not one of train, val, test")
                continue
            if file_at is not None:
                file = audio_root / cell(file_at) if cell(file_at) else None
            else:
                file = _audio_under(audio_root / work, performance) if work and performance else None
            table.add(work, performance, file, where, part)
    return table


def read_covers80(root: Path) -> CliqueTable:
    """Covers80's two lists: line i of ``list1.list`` and of ``list2.list`` are two performances of one
    work, ``<work folder>/<performance>`` (no extension) under ``covers32k/``. The lists may lie in
    ``covers32k/`` or in ``root``. A pair whose folders differ is skipped and described."""
    audio = root / COVERS80_AUDIO
    for folder in (audio, root):
        if all((folder / name).is_file() for name in COVERS80_LISTS):
            break
    else:
        raise FileNotFoundError(f"no Covers80 lists under {root}: expected {' and '.join(COVERS80_LISTS)} "
                                f"in {audio} or in {root}")
    lists = [[line.strip() for line in (folder / name).read_text().splitlines() if line.strip()]
             for name in COVERS80_LISTS]
    table = CliqueTable()
    if len(lists[0]) != len(lists[1]):
        log.warning("covers80: %s has %d lines and %s %d; the pairs are read line by line up to the shorter",
                    COVERS80_LISTS[0], len(lists[0]), COVERS80_LISTS[1], len(lists[1]))
    for line, pair in enumerate(zip(*lists), start=1):
        works = [entry.split("/", 1)[0] for entry in pair]
        if works[0] != works[1]:
            table.read += 2
            table.skipped.append(f"{pair[0]} and {pair[1]} (line {line} of both lists): their work folders differ")
            continue
        for name, entry in zip(COVERS80_LISTS, pair):
            table.add(works[0], entry, _audio_under(audio, entry), f"{name}, line {line}")
    return table


class WorkBatches(Sampler[int]):
    """The training order for metric learning: each epoch, every work's performances in random
    order, cut into groups of ``per_work``, the groups shuffled and laid end to end, so that a batch
    (a multiple of ``per_work`` clips) holds several performances of each of its works, which the
    triplet term needs (random batches of a large collection rarely hold two of one work). Every
    clip comes once per epoch. Seeded; the epoch is counted by the sampler.

    Under DDP, whole groups are dealt out to the ranks (every rank draws the same order, and takes
    every ``world_size``-th group), when the trainer leaves the sampler alone
    (``use_distributed_sampler: false``); Lightning's own wrapper would deal the clips out one by
    one and break the groups.
    """

    def __init__(self, works: list[int], per_work: int, seed: int):
        self.works, self.per_work, self.seed, self.epoch = list(works), int(per_work), int(seed), 0

    def __len__(self) -> int:
        """The clips of an epoch (of this rank's share under DDP: about 1 / world_size of them)."""
        return -(-len(self.works) // _rank_and_world()[1])

    def __iter__(self):
        rng = random.Random(f"{self.seed}/{self.epoch}")
        self.epoch += 1
        by_work: dict[int, list[int]] = {}
        for index, work in enumerate(self.works):
            by_work.setdefault(work, []).append(index)
        groups = []
        for indices in by_work.values():
            rng.shuffle(indices)
            groups += [indices[i:i + self.per_work] for i in range(0, len(indices), self.per_work)]
        rng.shuffle(groups)
        rank, world = _rank_and_world()
        return iter([i for g in groups[rank::world] for i in g])


def _rank_and_world() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class CliqueTableDataModule(AudioDataModule):
    """Any clique table over an audio folder (Da-TACOS, SHS100K, your own, ``musiczoo synth covers``).

    ``table`` (relative to ``root``, or absolute) is read by :func:`read_clique_table`; files are
    relative to ``root``. The split is the table's ``split`` column where it has one, else a seeded
    draw of whole works (``val_fraction``, ``test_fraction`` of the works). Clip keys are
    ``<work>/<performance>``. Skipped rows are warned about one by one and counted.

    Args:
        root: the audio folder.
        table: the clique table.
        performances_per_batch: how many performances of a work a training batch holds together
            (:class:`WorkBatches`); 1: random batches.
    """

    task = "versions"
    dataset_name = "covers"

    def __init__(self, root: str, table: str = "cliques.csv", val_fraction: float = VAL_FRACTION,
                 test_fraction: float = TEST_FRACTION, performances_per_batch: int = 2, **kwargs):
        super().__init__(root, **kwargs)
        self.table = self.root / Path(table).expanduser()
        self.val_fraction, self.test_fraction = float(val_fraction), float(test_fraction)
        check_fractions({"val": self.val_fraction, "test": self.test_fraction})
        if performances_per_batch < 1:
            raise ValueError(f"performances_per_batch must be at least 1, got {performances_per_batch}")
        self.performances_per_batch = int(performances_per_batch)
        self._parts = self._read_split()

    def read_table(self) -> CliqueTable:
        return read_clique_table(self.table, self.root)

    @property
    def split_name(self) -> str:
        if self._named_split:
            return f"column:{SPLIT_COLUMN}"
        return f"by-work(val={self.val_fraction:g},test={self.test_fraction:g},seed={self.seed})"

    def _read_split(self) -> dict[str, list[Item]]:
        """The parts, with targets; sets ``label_names`` (the training works) at construction, as the
        CLI links ``num_classes`` into the model before anything is decoded."""
        table = self.read_table()
        for entry in table.skipped:
            log.warning("%s: skipping performance %s", self.dataset_name, entry)
        if table.skipped:
            log.warning("%s: skipped %d of %d performances", self.dataset_name, len(table.skipped), table.read)
        if not table.rows:
            raise ValueError(f"{self.table}: no usable performance ({len(table.skipped)} of {table.read} rows skipped)")
        self._named_split = any(part is not None for *_, part in table.rows)
        keyed = [(Item(f"{w}/{p}", str(f), 0), w, part) for w, p, f, part in table.rows]
        work_of = {it.key: w for it, w, _ in keyed}
        if self._named_split:
            parts = {name: [it for it, _, part in keyed if (part or "train") == name] for name in ("train", "val", "test")}
            crossing = {work_of[it.key] for it in parts["train"]} & {work_of[it.key] for n in ("val", "test")
                                                                     for it in parts[n]}
            if crossing:
                raise ValueError(f"{self.table}: work {sorted(crossing)[0]} is in the training part and in an "
                                 "evaluation part; a version split must keep each work in one part")
        else:
            parts = random_parts([it for it, _, _ in keyed], {"val": self.val_fraction, "test": self.test_fraction},
                                 self.seed, group=lambda it: work_of[it.key])
        order = {}
        for name in ("train", "val", "test"):
            for work in sorted({work_of[it.key] for it in parts[name]}):
                order.setdefault(work, len(order))
        self.label_names = sorted({work_of[it.key] for it in parts["train"]})
        if not self.label_names:
            raise ValueError(f"{self.table}: no work is left for training")
        singles = sum(1 for n in table.works().values() if n < 2)
        if singles:
            log.info("%s: %d of %d works have one performance (trained on as classes, asked nothing at evaluation)",
                     self.dataset_name, singles, len(order))
        return {name: [Item(it.key, it.source, order[work_of[it.key]]) for it in items] for name, items in parts.items()}

    def split_items(self) -> dict[str, list[Item]]:
        return self._parts

    def train_dataloader(self):
        clips = self.clips("train")
        if self.performances_per_batch == 1:
            return super().train_dataloader()
        sampler = WorkBatches([c.target for c in clips], self.performances_per_batch, self.seed)
        return self._loader(CropDataset(self._audio_file, clips, self.chunk_size), shuffle=False,
                            drop_last=len(clips) > self.batch_size, collate_fn=collate_batch, sampler=sampler)


class Covers80DataModule(CliqueTableDataModule):
    """Covers80 (Ellis 2007): 80 works, two performances each, as distributed (``covers32k/`` with
    ``list1.list`` and ``list2.list``; :func:`read_covers80`). Split by work as for a clique table;
    the collection is small, so it serves best as a test of a model trained elsewhere."""

    dataset_name = "covers80"

    def __init__(self, root: str, **kwargs):
        super().__init__(root, table="", **kwargs)

    def read_table(self) -> CliqueTable:
        return read_covers80(self.root)
