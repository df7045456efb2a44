"""Two processes asked to build the same audio cache: the second waits on the first's lock and reuses its cache.

The first builder is held inside the locked section (it says so on its stdout, then waits for
a line on its stdin), so the second is started while the lock is certainly taken: no clock
decides whether the two overlap. Without the lock the second would not wait, would build a
cache of its own while the first is paused, and every check below would fail.
"""

import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HOLDING = "holding the build lock"
WAITING = "waiting for another process building audio cache"

BUILD = f"""
import logging, sys
logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
import datamodules.cache as audio_cache
from datamodules.gtzan import GTZANDataModule

role, root, cache_dir = sys.argv[1:4]
decoded = []
decode = audio_cache._decode
def counting(job):
    decoded.append(job.index)
    return decode(job)
audio_cache._decode = counting  # decode_workers=1: every file is decoded in this process

if role == "first":
    build = audio_cache.AudioCache.build
    def build_when_released(self):
        print({HOLDING!r}, flush=True)  # build() runs inside ensure()'s lock
        sys.stdin.readline()  # until the test lets this builder go on
        build(self)
    audio_cache.AudioCache.build = build_when_released

data = GTZANDataModule(root=root, cache_dir=cache_dir, sample_rate=8000, decode_workers=1)
data.prepare_data()
data.setup("fit")
print("decoded", len(decoded), "files")
print("train clips", len(data.clips("train")))
"""


class Builder:
    """One builder process; its output is read as it comes, so the test can wait for a line."""

    def __init__(self, role: str, root: Path, cache: Path):
        self.proc = subprocess.Popen([sys.executable, "-c", BUILD, role, str(root), str(cache)], cwd=ROOT,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self.closed = False
        self._changed = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self.closed = True
            self._changed.notify_all()

    @property
    def output(self) -> str:
        with self._changed:
            return "".join(self.lines)

    def wait_for(self, text: str, timeout: float = 300) -> bool:
        """Whether ``text`` appears in the output before the process ends or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not any(text in line for line in self.lines):
                if self.closed or time.monotonic() > deadline:
                    return False
                self._changed.wait(max(0.0, deadline - time.monotonic()))
        return True

    def finish(self, timeout: float = 300) -> str:
        self.proc.wait(timeout=timeout)
        with self._changed:
            while not self.closed:
                self._changed.wait(1)
        return self.output


def flock_lines(lock: Path) -> list[str]:
    """The fields of the kernel's /proc/locks lines for ``lock``: holders, and waiters (first field ``->``)."""
    inode = lock.stat().st_ino
    return [line.split(":", 1)[1].split() for line in Path("/proc/locks").read_text().splitlines()
            if line.split()[-3].endswith(f":{inode}")]


def waits_on(lock: Path, holder: int, waiter: int, timeout: float = 60) -> bool:
    """Whether the kernel shows ``waiter`` blocked on the flock that ``holder`` holds on ``lock``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = flock_lines(lock)
        if ["FLOCK", "ADVISORY", "WRITE", str(holder)] in [f[:4] for f in lines] and \
                ["->", "FLOCK", "ADVISORY", "WRITE", str(waiter)] in [f[:5] for f in lines]:
            return True
        time.sleep(0.05)
    return False


def test_a_second_builder_waits_for_the_first_and_reuses_its_cache(gtzan_rerelease, tmp_path):
    cache = tmp_path / "cache"
    first = Builder("first", gtzan_rerelease, cache)
    second = None
    try:
        assert first.wait_for(HOLDING), first.output
        (lock,) = cache.glob(".*.lock")
        second = Builder("second", gtzan_rerelease, cache)
        # Logged only after a non-blocking flock found the lock taken.
        assert second.wait_for(WAITING), second.output
        if Path("/proc/locks").is_file():  # Linux: the kernel itself shows the second blocked on the first's lock
            assert waits_on(lock, holder=first.proc.pid, waiter=second.proc.pid), flock_lines(lock)
        assert second.proc.poll() is None and "audio cache" not in second.output.replace(WAITING, "")
        assert not [p for p in cache.iterdir() if p.is_dir()]  # the first has not built anything yet

        first.proc.stdin.write("go\n")
        first.proc.stdin.close()
        outputs = [first.finish(), second.finish()]
    finally:
        for builder in (first, second):
            if builder is not None and builder.proc.poll() is None:
                builder.proc.kill()
                builder.proc.wait()
    assert [first.proc.returncode, second.proc.returncode] == [0, 0], "\n".join(o[-1500:] for o in outputs)
    # The first decoded all 930 files of the split and built; the second decoded none and reused its cache.
    assert "built audio cache" in outputs[0] and "decoded 930 files" in outputs[0]
    assert "built audio cache" not in outputs[1] and "decoded 0 files" in outputs[1]
    assert "reusing audio cache" in outputs[1] and outputs[1].index(WAITING) < outputs[1].index("reusing audio cache")
    assert all("train clips 442" in o for o in outputs)  # 443 listed, the empty jazz.00054.wav skipped
    folders = [p for p in cache.iterdir() if p.is_dir()]
    assert len(folders) == 1 and not [p for p in cache.iterdir() if ".building-" in p.name]
    assert (folders[0] / "index.json").is_file()
