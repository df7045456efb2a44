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
    path = Path(path)
    if not path.is_file():
        return []
    records, broken = [], 0
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            broken += 1
            continue
        if isinstance(record, dict):
            records.append(record)
        else:
            broken += 1
    if broken:
        log.warning("%s: ignored %d incomplete line(s) (a writer was killed mid-write)", path, broken)
    return records
