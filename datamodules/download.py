"""Get the real datasets: resumable, checksummed downloads and safe extraction (``musiczoo download``).

Dead links and half-downloaded archives are the most common complaint about GTZAN and
MagnaTagATune, so every file has several known sources, tried in order with a report of
each attempt; a download streams into ``<name>.part`` (resumed with an HTTP range request
after an interruption), is checked against its known size and checksum, and only then is
renamed into place, so a file that looks complete is complete. Where no checksum is
published, the one computed on the first download is recorded in ``<root>/.musiczoo-checksums.json``
and later copies are checked against it. Archives are extracted into a temporary folder
inside ``root`` after every member was checked (no absolute paths, no ``..``, no links
pointing out), then moved into place.

The result is exactly the layout the data modules read: ``root/genres/<g>/<g>.000NN.au``
for GTZAN, ``root/0..f/*.mp3`` plus ``annotations_final.csv`` for MagnaTagATune. The split
lists that other projects publish come with the dataset into ``root/splits/``, each checked
against the SHA-256 recorded here (``--lists-only`` fetches just those, for a machine that has
the audio already); MagnaTagATune's top-50 split is then derived from its sources there.
"""

from __future__ import annotations

import errno
import http.client
import logging
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from tqdm.auto import tqdm

from .mtat_split import INDEX_SOURCE, LIST_SOURCES, TAGS_SOURCE, derive_top50_split
from .primitives.files import file_digest, read_json, write_json
from .split_lists import LISTED_SPLITS, LISTS_FOLDER, lists_folder, split_file_name

log = logging.getLogger(__name__)

CHUNK = 1 << 20
CHECKSUM_RECORD = ".musiczoo-checksums.json"
USER_AGENT = "musiczoo-download"


class DownloadError(RuntimeError):
    """A file that could not be fetched or checked; the message is one line with what to try."""


class UnsafeArchiveError(DownloadError):
    """An archive with a member that would land outside the target folder."""


@dataclass(frozen=True)
class Source:
    """One place a file can come from: a URL, or a file of a Hugging Face Hub dataset repository."""

    url: str | None = None
    hub_repo: str | None = None
    hub_file: str | None = None

    def __str__(self) -> str:
        return self.url or f"hf://datasets/{self.hub_repo}/{self.hub_file}"


@dataclass(frozen=True)
class RemoteFile:
    """A file of a dataset: its name under ``root``, its sources in order, and what is known of it."""

    name: str
    sources: tuple[Source, ...]
    md5: str | None = None
    size: int | None = None
    note: str = ""
    #: For a file whose bytes are known (the split lists): checked instead of the MD5.
    sha256: str | None = None


@dataclass(frozen=True)
class DatasetRelease:
    files: tuple[RemoteFile, ...]
    #: How the downloaded files become the data modules' layout: "tar" (extract each .tar.gz),
    #: "joined-zip" (concatenate the ``mp3.zip.NNN`` parts, extract the zip).
    unpack: str
    citation: str = ""
    #: The split lists, fetched into ``root/splits/`` with the dataset or alone (``lists_only``).
    lists: tuple[RemoteFile, ...] = ()
    #: Run on ``root/splits`` once the lists are in; returns one line saying what it made.
    derive: Callable[[Path], str] | None = None


def _raw(repo: str, revision: str, path: str) -> Source:
    return Source(url=f"https://raw.githubusercontent.com/{repo}/{revision}/{path}")


def _split_list(name: str, size: int, sha256: str, *sources: Source, note: str) -> RemoteFile:
    return RemoteFile(f"{LISTS_FOLDER}/{name}", sources, size=size, sha256=sha256, note=note)


#: GTZAN's fault-filtered split comes with torchaudio; the stratified lists (Kereliuk, Sturm &
#: Larsen's random 500/250/250) and Sturm's artist/title index are fetched.
GTZAN_LISTS = tuple(
    _split_list(split_file_name("{split}_stratified.txt", part), size, sha256,
                _raw("coreyker/dnn-mgr", "05f95ff5404d6c3e6f0594d0ffd2711e8a790dcc", f"gtzan/{split_file_name('{split}_stratified.txt', part)}"),
                _raw("coreyker/dnn-mgr", "master", f"gtzan/{split_file_name('{split}_stratified.txt', part)}"),
                note=f"the stratified {part} list (coreyker/dnn-mgr)")
    for part, size, sha256 in (
        ("train", 11400, "e4d9be9546793e222b4d7915db0af8fb9683d980b10ac4f915453e62333c2368"),
        ("val", 5700, "60e0fd1ce2a16df77fae312b64153fd717716387094203e504e83bfd472b2a6c"),
        ("test", 5700, "8fe4c4d159c61bebf64470b178d094773a051c67d675f1f61abc7957758e6821"))
) + (_split_list("GTZANindex.txt", 56038, "7bc7140f082cccd72046ec7c6e9b9c211a7491f6e7ede38fddafc63058559833",
                 _raw("seungheondoh/gtzan-bind", "main", "dataset/metadata/sturm2013faults/GTZANindex.txt"),
                 _raw("seungheondoh/gtzan-bind", "main", "dataset/rhythm/marchand2015swing/GTZANindex.txt"),
                 note="Sturm's artist/title index (seungheondoh/gtzan-bind)"),)

#: MagnaTagATune's top-50 split sources: Jongpil Lee's lists and tags, musicnn's clip index.
MTAT_LISTS = tuple(
    _split_list(LIST_SOURCES[part], size, sha256,
                _raw("jongpillee/music_dataset_split", "master", f"MTAT_split/{LIST_SOURCES[part]}"),
                note=f"the top-50 {part} clips (jongpillee/music_dataset_split)")
    for part, size, sha256 in (
        ("train", 1208643, "76c9eec0fdd3d7533adda0cb4be4844996ed7469586b337bfc97f863fd3ec09a"),
        ("val", 122390, "b3528613a6832ce49f11628fd21103dbf266e43086b465798221519ae64c2917"),
        ("test", 353102, "43edc3b8951f7c9e613f618ab828ab80036b2e2e604bb20a93e623b186b63b30"))
) + (
    _split_list(TAGS_SOURCE, 347, "f54e613d7a687de34a19cf99d1d1d252466134f11da8c9f31efbd365a77a29ff",
                _raw("jongpillee/music_dataset_split", "master", f"MTAT_split/{TAGS_SOURCE}"),
                note="the 50 tags (jongpillee/music_dataset_split)"),
    _split_list(INDEX_SOURCE, 1937215, "e4bb40f3bcb7efec044aeae2a5cf1a94cadab143b71e5d23f6a4398673af5e9d",
                _raw("jordipons/musicnn-training", "master", f"data/index/mtt/{INDEX_SOURCE}"),
                _raw("jordipons/musicnn-training", "master", "aux/mtt/index_MAGNA.tsv"),
                note="clip_id and path of every clip (jordipons/musicnn-training)"),
)


def _derive_mtat(folder: Path) -> str:
    counts = derive_top50_split(folder)
    return "derived the top-50 split: " + " / ".join(f"{part} {counts[part]:,}" for part in LISTED_SPLITS) + " clips"


MTAT_HOSTS = ("https://mirg.city.ac.uk/datasets/magnatagatune/", "http://mi.soi.city.ac.uk/datasets/magnatagatune/")

#: Known sources. Checksums only where a maintained public source records one (GTZAN's MD5 is
#: the one mirdata's ``gtzan_genre`` loader checks); MagnaTagATune publishes none, so its files
#: are checked against the checksum recorded on their first download.
RELEASES: dict[str, DatasetRelease] = {
    "gtzan": DatasetRelease(
        files=(RemoteFile(
            "genres.tar.gz",
            (Source(url="http://opihi.cs.uvic.ca/sound/genres.tar.gz"),
             Source(hub_repo="marsyas/gtzan", hub_file="data/genres.tar.gz")),
            md5="5b3d6dddb579ab49814ab86dba69e7c7",
            note="the original tarball (about 1.2 GB): genres/<genre>/<genre>.000NN.au"),),
        unpack="tar",
        citation="G. Tzanetakis and P. Cook, Musical genre classification of audio signals, IEEE TSAP 2002",
        lists=GTZAN_LISTS),
    "mtat": DatasetRelease(
        files=tuple(RemoteFile(name, tuple(Source(url=host + name) for host in MTAT_HOSTS), note=note) for name, note in (
            ("mp3.zip.001", "part 1 of the split zip of the 25,863 mp3 clips"),
            ("mp3.zip.002", "part 2"),
            ("mp3.zip.003", "part 3"),
            ("annotations_final.csv", "the 188 tag columns per clip"),
            ("clip_info_final.csv", "title, artist and album per clip"))),
        unpack="joined-zip",
        citation="E. Law, K. West, M. Mandel, M. Bay and J. S. Downie, Evaluation of algorithms using games, ISMIR 2009",
        lists=MTAT_LISTS, derive=_derive_mtat),
}


@dataclass
class Attempt:
    source: str
    outcome: str


@dataclass
class FetchReport:
    name: str
    path: Path | None = None
    attempts: list[Attempt] = field(default_factory=list)
    resumed_from: int = 0
    bytes: int = 0


# ---- checksums -------------------------------------------------------------------------------
def _recorded(root: Path) -> dict:
    path = root / CHECKSUM_RECORD
    return read_json(path, DownloadError) if path.is_file() else {}


def _record(root: Path, name: str, md5: str) -> None:
    write_json(root / CHECKSUM_RECORD, dict(sorted({**_recorded(root), name: md5}.items())))


def check(path: Path, remote: RemoteFile, root: Path) -> str:
    """Size and checksum of a downloaded file against what is known (recorded here, published,
    else recorded at the first download). Returns how it was checked; raises
    :class:`DownloadError` on a mismatch."""
    if remote.size is not None and path.stat().st_size != remote.size:
        raise DownloadError(f"{remote.name}: {path.stat().st_size:,} bytes, expected {remote.size:,}; the download is "
                            f"damaged or the source changed it")
    if remote.sha256:
        sha256 = file_digest(path, "sha256")
        if sha256 != remote.sha256:
            raise DownloadError(f"{remote.name}: SHA-256 {sha256} does not match the recorded {remote.sha256}; the "
                                f"download is damaged or the source changed it")
        return "SHA-256 matches the recorded checksum"
    md5 = file_digest(path)
    expected = remote.md5 or _recorded(root).get(remote.name)
    if expected and md5 != expected:
        source = "published" if remote.md5 else f"recorded at its first download in {root / CHECKSUM_RECORD}"
        raise DownloadError(f"{remote.name}: MD5 {md5} does not match the {source} {expected}; the download is "
                            f"damaged or the source changed it. Delete it and download again, or try another source")
    if expected:
        return "MD5 matches the " + ("published checksum" if remote.md5 else "checksum recorded at the first download")
    _record(root, remote.name, md5)
    return f"no published checksum: recorded MD5 {md5} for later copies"


# ---- fetching --------------------------------------------------------------------------------
def _http_fetch(url: str, part: Path, progress: bool, timeout: float) -> int:
    """Stream ``url`` into ``part``, resuming from its current size; returns the offset resumed from."""
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, **({"Range": f"bytes={offset}-"} if offset else {})})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        if offset and response.status != 206:  # the server ignored the range: start again
            offset = 0
        total = response.headers.get("Content-Length")
        total = int(total) + offset if total is not None else None
        with open(part, "ab" if offset else "wb") as out, tqdm(
                total=total, initial=offset, unit="B", unit_scale=True, desc=part.name[:-5], disable=not progress) as bar:
            while block := response.read(CHUNK):
                out.write(block)
                bar.update(len(block))
        if total is not None and part.stat().st_size != total:
            raise ConnectionError(f"connection closed after {part.stat().st_size:,} of {total:,} bytes")
    return offset


def _hub_fetch(source: Source, part: Path, timeout: float) -> None:
    from .hf import hub_dataset_file

    shutil.copyfile(hub_dataset_file(source.hub_repo, source.hub_file, timeout), part)


def _explain(error: BaseException) -> str:
    """One line saying what went wrong and what to try."""
    if isinstance(error, urllib.error.HTTPError):
        hint = {404: "the file is gone from this source", 403: "this source refuses the download (moved, or needs a login)"}
        return f"HTTP {error.code} {error.reason}: {hint.get(error.code, 'the server refused the request')}"
    if isinstance(error, urllib.error.URLError):
        return f"cannot reach the server ({error.reason}); check the network connection or proxy"
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        return "the disk is full; free space or choose another --root"
    if isinstance(error, PermissionError):
        return f"permission denied ({error.filename}); choose a --root you can write to"
    if isinstance(error, http.client.IncompleteRead):
        return f"the connection dropped after {len(error.partial):,} more bytes; run the command again to resume"
    if isinstance(error, (ConnectionError, TimeoutError, http.client.HTTPException)):
        return f"{error or type(error).__name__}; run the command again to resume"
    return f"{type(error).__name__}: {error}"


def fetch(remote: RemoteFile, root: Path, *, progress: bool = True, timeout: float = 60) -> FetchReport:
    """``root/<name>``, downloaded from the first source that works, resumed and checked; a file
    already in place is only checked."""
    report = FetchReport(remote.name)
    target, part = root / remote.name, root / f"{remote.name}.part"
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_file():
        report.attempts.append(Attempt("already downloaded", check(target, remote, root)))
        report.path, report.bytes = target, target.stat().st_size
        return report
    for source in remote.sources:
        try:
            if source.url:
                report.resumed_from = _http_fetch(source.url, part, progress, timeout)
            else:
                _hub_fetch(source, part, timeout)
            outcome = check(part, remote, root)
        except DownloadError as e:
            part.unlink(missing_ok=True)  # a damaged download must not be resumed
            report.attempts.append(Attempt(str(source), str(e)))
            continue
        except Exception as e:  # network, HTTP, disk: the .part stays for a resume only if it is partial data
            report.attempts.append(Attempt(str(source), _explain(e)))
            if isinstance(e, urllib.error.HTTPError) and part.exists() and part.stat().st_size == 0:
                part.unlink()
            continue
        os.replace(part, target)
        report.attempts.append(Attempt(str(source), f"downloaded, {outcome}"))
        report.path, report.bytes = target, target.stat().st_size
        return report
    tried = "; ".join(f"{a.source}: {a.outcome}" for a in report.attempts)
    raise DownloadError(f"{remote.name}: every source failed ({tried})")


# ---- safe extraction -------------------------------------------------------------------------
def _safe_member(name: str, what: str) -> PurePosixPath:
    path = PurePosixPath(name)
    if path.is_absolute() or name.startswith(("/", "\\")) or ".." in path.parts or ":" in path.parts[0]:
        raise UnsafeArchiveError(f"{what}: member {name!r} would be written outside the target folder; refusing the archive")
    return path


def extract_tar(archive: Path, target: Path) -> None:
    """Extract after checking every member: regular files and folders only, all inside ``target``."""
    with tarfile.open(archive) as tar:
        members = tar.getmembers()
        for member in members:
            _safe_member(member.name, str(archive))
            if member.issym() or member.islnk():
                raise UnsafeArchiveError(f"{archive}: member {member.name!r} is a link; refusing the archive")
            if not (member.isfile() or member.isdir()):
                raise UnsafeArchiveError(f"{archive}: member {member.name!r} is not a file or folder; refusing the archive")
        tar.extractall(target, members=members, filter="data")


def extract_zip(archive: Path, target: Path) -> None:
    """Extract after checking every member name (and refusing symbolic links, which zip can store)."""
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            _safe_member(info.filename, str(archive))
            if (info.external_attr >> 16) & 0o170000 == 0o120000:
                raise UnsafeArchiveError(f"{archive}: member {info.filename!r} is a symbolic link; refusing the archive")
        zf.extractall(target)


def join_parts(parts: list[Path], out: Path) -> Path:
    """``mp3.zip.001 + .002 + .003`` -> one zip (the release is one zip split by size)."""
    with open(out, "wb") as joined:
        for part in parts:
            with open(part, "rb") as f:
                shutil.copyfileobj(f, joined, CHUNK)
    return out


def _move_into(staging: Path, root: Path) -> None:
    for entry in staging.iterdir():
        destination = root / entry.name
        if destination.is_dir() and entry.is_dir():
            _move_into(entry, destination)
        else:
            os.replace(entry, destination)


def unpack(dataset: str, root: Path) -> None:
    """Turn the downloaded files into the data module's layout, through a staging folder in ``root``."""
    release = RELEASES[dataset]
    staging = Path(tempfile.mkdtemp(prefix=".extracting-", dir=root))
    try:
        if release.unpack == "tar":
            for remote in release.files:
                extract_tar(root / remote.name, staging)
        else:
            parts = sorted(root / f.name for f in release.files if ".zip." in f.name)
            joined = join_parts(parts, staging / "joined.zip")
            extract_zip(joined, staging / "content")
            joined.unlink()
            _move_into(staging / "content", staging)
            (staging / "content").rmdir()
        _move_into(staging, root)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def download(dataset: str, root: str | os.PathLike, *, progress: bool = True, keep_archives: bool = True,
             timeout: float = 60, lists_only: bool = False) -> list[FetchReport]:
    """Download, check and unpack ``dataset`` into ``root`` with its split lists (only the lists
    with ``lists_only``); returns a report per file, and one for what was derived from the lists."""
    if dataset not in RELEASES:
        raise DownloadError(f"unknown dataset {dataset!r}; known: {', '.join(RELEASES)}")
    release, root = RELEASES[dataset], Path(root).expanduser()
    reports = []
    for remote in release.lists if lists_only else release.files + release.lists:
        report = fetch(remote, root, progress=progress, timeout=timeout)
        for attempt in report.attempts:
            log.info("%s: %s: %s", remote.name, attempt.source, attempt.outcome)
        reports.append(report)
    if not lists_only:
        unpack(dataset, root)
    if release.derive:
        try:
            made = release.derive(lists_folder(root))
        except (OSError, ValueError) as e:
            raise DownloadError(f"the split lists in {lists_folder(root)} do not give the literature's split: {e}") from None
        reports.append(FetchReport(f"{LISTS_FOLDER}/", lists_folder(root), [Attempt("derived", made)]))
    if not keep_archives and not lists_only:
        for remote in release.files:
            if remote.name.endswith((".tar.gz", ".zip.001", ".zip.002", ".zip.003")):
                (root / remote.name).unlink(missing_ok=True)
    return reports
