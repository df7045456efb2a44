"""Files: a file's digest, the one atomic write, the one JSON and YAML read and the one writer's lock of the project.

Every file the project writes for later (a published model, a library's manifest and shards,
the download checksum record) goes through :func:`write_atomically`, so a reader sees the old
file or the new one, never half of one, and a full disk replaces nothing. Every JSON file it
reads back goes through :func:`read_json` (every YAML file a user hands it, a config or a grid,
through :func:`read_yaml`), so a damaged one is one line naming the file.
Every folder that several processes may build at once (the audio cache, a library) is built
under :func:`exclusive_lock`, so they take turns. Imports nothing of the project.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import secrets
from pathlib import Path
from typing import Callable, Iterator, Mapping

import yaml

#: Bytes read at a time when hashing.
DIGEST_BLOCK = 1 << 20


def file_digest(path: str | os.PathLike, algorithm: str = "md5") -> str:
    """The hex digest of a file's bytes, read block by block (memory stays flat for any size)."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(DIGEST_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def _umask() -> int:
    """The process's umask (read without changing it where /proc allows)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomically(folder: str | os.PathLike, writers: Mapping[str, Callable[[Path], object]]) -> None:
    """Write every ``name: writer(path)`` to a temporary file in ``folder``, then rename each over ``name``.

    All files are complete and synced to disk before the first rename, so an error (a full
    disk) replaces nothing; the temporary files are removed whatever happens. Files get the
    user's usual permissions (``0o666`` less the umask), whatever the writer created them with.
    """
    folder = Path(folder)
    mode = 0o666 & ~_umask()
    tag = f"{os.getpid()}.{secrets.token_hex(4)}"
    temps = {name: folder / f".{name}.{tag}.tmp" for name in writers}
    try:
        for name, writer in writers.items():
            writer(temps[name])
            os.chmod(temps[name], mode)  # safetensors creates its file 0600
            with open(temps[name], "rb") as f:
                os.fsync(f.fileno())
        for name, temp in temps.items():
            os.replace(temp, folder / name)
    finally:
        for temp in temps.values():
            temp.unlink(missing_ok=True)


def write_json(path: str | os.PathLike, data, *, indent: int = 1) -> None:
    """``data`` as JSON at ``path``, atomically; never a bare NaN or Infinity (not JSON)."""
    path = Path(path)
    text = json.dumps(data, indent=indent, allow_nan=False) + "\n"
    write_atomically(path.parent, {path.name: lambda p: p.write_text(text)})


def read_text(path: str | os.PathLike, kind: str, error: type[Exception] = ValueError, missing: str | None = None) -> str:
    """The text of ``path``, a ``kind`` file (JSON, YAML); a missing file, a folder or bytes that are
    not UTF-8 are ``error`` with one line naming the file (``missing`` words the missing-file case)."""
    path = Path(path)
    try:
        return path.read_text()
    except FileNotFoundError:
        raise error(missing or f"{path}: no such file") from None
    except IsADirectoryError:
        raise error(f"{path}: is a folder, not a {kind} file") from None
    except UnicodeDecodeError:
        raise error(f"{path}: not a text file (invalid UTF-8), so not {kind}") from None


def read_json(path: str | os.PathLike, error: type[Exception] = ValueError, missing: str | None = None):
    """The JSON value in ``path``; a missing file or invalid JSON is ``error`` with one line naming the file.

    ``missing`` words the missing-file case (default ``<path>: no such file``).
    """
    text = read_text(path, "JSON", error, missing)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise error(f"{path}: invalid JSON ({e})") from None


def read_yaml(path: str | os.PathLike, error: type[Exception] = ValueError, missing: str | None = None):
    """The YAML value in ``path``; a missing file or invalid YAML is ``error`` with one line naming
    the file and, for a syntax error, its line and column (the parser alone names neither).

    ``missing`` words the missing-file case (default ``<path>: no such file``).
    """
    text = read_text(path, "YAML", error, missing)
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise error(f"{path}: invalid YAML{where}: {getattr(e, 'problem', None) or e}") from None


@contextlib.contextmanager
def exclusive_lock(path: str | os.PathLike, on_wait: Callable[[], object] | None = None) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if missing) for the ``with`` block.

    A second process asking for the same lock waits until the first leaves its block (or
    dies: the kernel releases the lock of a killed process, so no stale lock is ever left);
    ``on_wait`` is called once when it has to wait, to say why it is blocked. The lock file
    itself is left in place: removing it would let a third process lock a new file while
    the second still holds the old one.
    """
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                on_wait()
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
