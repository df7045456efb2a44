"""Records files (``benchmarks/results/*.jsonl``): one JSON record per line, safe to share between processes.

Appends take an exclusive ``flock`` on the file and write one whole line, so two runners
(or the tasks of a SLURM array on one file system) never interleave records. A process
killed in the middle of a write leaves at most a partial last line: readers skip lines
that are not JSON (and say how many), and the next append starts on a fresh line so the
partial one cannot swallow it.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)


def append_record(path: Path, record: dict) -> None:
    """Append ``record`` as one line of ``path`` under an exclusive lock."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(record, allow_nan=False) + "\n"
    with open(path, "a+b") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            f.seek(0, os.SEEK_END)
            if f.tell() > 0:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":  # a writer died mid-line: start a fresh one
                    line = "\n" + line
            f.write(line.encode())
            f.flush()
            os.fsync(f.fileno())
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def read_records(path: Path) -> list[dict]:
    """Every complete record of ``path`` (none when it does not exist yet)."""
    return [record for _, record in read_numbered_records(path)]


def read_numbered_records(path: Path) -> list[tuple[int, dict]]:
    """Every complete record of ``path`` with its line number, so a reader can say which line is
    wrong. A file that is not text cannot be a results file (a killed writer leaves part of an
    ASCII line, never other bytes): that is a ``ValueError`` naming the file."""
    path = Path(path)
    if not path.is_file():
        return []
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a text file (invalid UTF-8), so not a results file of JSON lines") from None
    records, broken = [], 0
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            broken += 1
            continue
        if isinstance(record, dict):
            records.append((number, record))
        else:
            broken += 1
    if broken:
        log.warning("%s: ignored %d incomplete line(s) (a writer was killed mid-write)", path, broken)
    return records
