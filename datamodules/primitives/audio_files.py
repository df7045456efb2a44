"""Which files count as audio, and finding them below a folder: listed, walked in id order, or
expanded from what a user gave. Nothing is decoded here (:mod:`datamodules.primitives.audio` does that)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Iterable, Iterator

log = logging.getLogger(__name__)

#: File name endings taken as audio; anything else in a music folder (notes, cover art) is ignored.
AUDIO_EXTENSIONS = (".wav", ".au", ".snd", ".aif", ".aiff", ".flac", ".ogg", ".oga", ".opus", ".mp3")


def is_audio_file(path: Path) -> bool:
    """An audio file by its ending; hidden files are not (macOS archives carry ``._name.wav`` twins)."""
    return path.suffix.lower() in AUDIO_EXTENSIONS and not path.name.startswith(".") and path.is_file()


def list_audio_files(folder: str | os.PathLike) -> list[Path]:
    """The audio files below ``folder``, recursively, sorted."""
    return sorted(p for p in Path(folder).rglob("*") if is_audio_file(p))


def walk_audio_files(folder: str | os.PathLike) -> Iterator[tuple[str, Path]]:
    """``(id, path)`` of the audio files below ``folder``, the id being the path relative to it
    (``/``-separated), in the order of the ids as strings, one directory listing in memory at a
    time: a collection of millions of files is walked without a list of them.

    The same files as :func:`list_audio_files` (symbolic links to directories are not
    followed; an unreadable folder below ``folder`` is logged and passed over), whose order (of path components) differs where a name sorts before ``/``.
    Sorting each directory's entries with ``/`` after a directory's name gives the order of
    the whole ids, since an id is its directory's id, ``/``, then the rest."""
    root = Path(folder)

    def walk(directory: Path, prefix: str) -> Iterator[tuple[str, Path]]:
        try:
            with os.scandir(directory) as listing:
                entries = sorted(((entry.name + "/" if entry.is_dir(follow_symlinks=False) else entry.name), entry.name)
                                 for entry in listing)
        except OSError as e:  # as rglob does, an unreadable folder below ``folder`` is passed over, but named
            if not prefix:
                raise
            log.warning("skipping the unreadable folder %s (%s)", directory, e.strerror or e)
            return
        for key, name in entries:
            if key.endswith("/"):
                yield from walk(directory / name, prefix + key)
            elif is_audio_file(directory / name):
                yield prefix + name, directory / name

    return walk(root, "")


def expand_audio_paths(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Files as given, folders expanded to their audio files (:func:`list_audio_files`).

    A path that does not exist is kept, so a caller reports it with the other unreadable
    files instead of stopping the run.
    """
    files = []
    for p in map(Path, paths):
        if p.is_dir():
            found = list_audio_files(p)
            if not found:
                log.warning("no audio files (%s) under %s", ", ".join(AUDIO_EXTENSIONS), p)
            files += found
        else:
            files.append(p)
    return files
