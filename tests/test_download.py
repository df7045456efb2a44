"""Downloads against a real HTTP server on 127.0.0.1 serving small archives in the real formats.

The server speaks HTTP range requests like the datasets' hosts, can drop a connection
halfway through, and answers 404/403 where told to; the known sources of GTZAN and
MagnaTagATune are pointed at it for the test.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import socket
import tarfile
import threading
import zipfile
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import datamodules.download as dl
from datamodules.download import (
    DownloadError,
    RemoteFile,
    Source,
    UnsafeArchiveError,
    download,
)
from datamodules.gtzan import GTZANDataModule, artists
from datamodules.mtat_split import load_top50_split
from datamodules.synthetic import make_synthetic_gtzan
from zoo.cli import main


class Files(BaseHTTPRequestHandler):
    """Serves ``files`` (path -> bytes) with ranges; ``drop`` paths send half their body once, then close."""

    files: dict[str, bytes] = {}
    forbidden: set[str] = set()
    drop: set[str] = set()
    requests: list[tuple[str, str | None]] = []

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.requests.append((self.path, self.headers.get("Range")))
        if self.path in self.forbidden:
            return self.send_error(403)
        body = self.files.get(self.path)
        if body is None:
            return self.send_error(404)
        start = 0
        if self.headers.get("Range"):
            start = int(self.headers["Range"].split("=")[1].split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        if self.path in self.drop:
            self.drop.discard(self.path)
            self.wfile.write(body[start:start + (len(body) - start) // 2])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(body[start:])


@pytest.fixture()
def server():
    Files.files, Files.forbidden, Files.drop, Files.requests = {}, set(), set(), []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Files)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


@pytest.fixture(scope="module")
def gtzan_tarball(tmp_path_factory) -> bytes:
    """The original release's layout, genres/<g>/<g>.000NN.au, two clips per genre."""
    tmp = tmp_path_factory.mktemp("tarball")
    make_synthetic_gtzan(tmp, seconds=0.3, sample_rate=8000, layout="genres", clips_per_genre=2)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(tmp / "genres", arcname="genres")
    return buffer.getvalue()


def point_gtzan_at(monkeypatch, *sources: Source, md5_sum: str | None):
    remote = replace(dl.RELEASES["gtzan"].files[0], sources=tuple(sources), md5=md5_sum)
    monkeypatch.setitem(dl.RELEASES, "gtzan", replace(dl.RELEASES["gtzan"], files=(remote,), lists=()))


def test_full_download_checks_and_unpacks(server, monkeypatch, gtzan_tarball, tmp_path):
    Files.files["/genres.tar.gz"] = gtzan_tarball
    point_gtzan_at(monkeypatch, Source(url=f"{server}/genres.tar.gz"), md5_sum=md5(gtzan_tarball))
    (report,) = download("gtzan", tmp_path, progress=False)
    assert report.attempts[-1].outcome.startswith("downloaded, MD5 matches the published checksum")
    assert sorted(p.relative_to(tmp_path).as_posix() for p in (tmp_path / "genres" / "jazz").iterdir()) == [
        "genres/jazz/jazz.00000.au", "genres/jazz/jazz.00001.au"]
    assert not list(tmp_path.glob("*.part")) and not list(tmp_path.glob(".extracting-*"))
    # Already there: checked, not fetched again.
    Files.requests.clear()
    (again,) = download("gtzan", tmp_path, progress=False)
    assert Files.requests == [] and again.attempts[0].source == "already downloaded"


def test_an_interrupted_download_resumes(server, monkeypatch, gtzan_tarball, tmp_path):
    Files.files["/genres.tar.gz"] = gtzan_tarball
    Files.drop.add("/genres.tar.gz")
    point_gtzan_at(monkeypatch, Source(url=f"{server}/genres.tar.gz"), md5_sum=md5(gtzan_tarball))
    with pytest.raises(DownloadError, match="connection dropped|run the command again to resume"):
        download("gtzan", tmp_path, progress=False)
    part = tmp_path / "genres.tar.gz.part"
    assert part.stat().st_size == len(gtzan_tarball) // 2 and not (tmp_path / "genres.tar.gz").exists()
    (report,) = download("gtzan", tmp_path, progress=False)
    assert report.resumed_from == len(gtzan_tarball) // 2
    assert Files.requests[-1] == ("/genres.tar.gz", f"bytes={len(gtzan_tarball) // 2}-")
    assert (tmp_path / "genres.tar.gz").read_bytes() == gtzan_tarball


def test_a_checksum_mismatch_leaves_nothing_that_looks_complete(server, monkeypatch, gtzan_tarball, tmp_path):
    Files.files["/genres.tar.gz"] = gtzan_tarball
    point_gtzan_at(monkeypatch, Source(url=f"{server}/genres.tar.gz"), md5_sum="0" * 32)
    with pytest.raises(DownloadError, match="does not match the published 0{32}") as e:
        download("gtzan", tmp_path, progress=False)
    assert "\n" not in str(e.value)
    assert list(tmp_path.iterdir()) == []


def test_a_404_falls_back_to_the_next_source_and_each_attempt_is_reported(server, monkeypatch, gtzan_tarball, tmp_path):
    Files.files["/mirror/genres.tar.gz"] = gtzan_tarball
    Files.forbidden.add("/private/genres.tar.gz")
    point_gtzan_at(monkeypatch, Source(url=f"{server}/gone/genres.tar.gz"), Source(url=f"{server}/private/genres.tar.gz"),
                   Source(url=f"{server}/mirror/genres.tar.gz"), md5_sum=None)
    (report,) = download("gtzan", tmp_path, progress=False)
    outcomes = [a.outcome for a in report.attempts]
    assert outcomes[0].startswith("HTTP 404") and "gone from this source" in outcomes[0]
    assert outcomes[1].startswith("HTTP 403") and "refuses" in outcomes[1]
    assert outcomes[2].startswith("downloaded, no published checksum: recorded MD5 " + md5(gtzan_tarball))
    assert (tmp_path / ".musiczoo-checksums.json").read_text().count(md5(gtzan_tarball)) == 1


def test_no_network_is_one_line(monkeypatch, tmp_path, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]  # nothing listens here once the socket is closed
    point_gtzan_at(monkeypatch, Source(url=f"http://127.0.0.1:{closed_port}/genres.tar.gz"), md5_sum=None)
    with pytest.raises(SystemExit) as e:
        main(["download", "gtzan", "--root", str(tmp_path)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "cannot reach the server" in err and len(err.strip().splitlines()) == 1


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens here once the socket is closed


def test_no_network_fails_fast_without_the_hubs_retries(monkeypatch, tmp_path, capfd):
    """The first source and the Hub both refuse, as without a network: one line naming both, at
    once (huggingface_hub alone retries five times over 23 s, printing two lines a retry)."""
    import time

    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    url = f"http://127.0.0.1:{closed_port()}/genres.tar.gz"
    point_gtzan_at(monkeypatch, Source(url=url), Source(hub_repo="musiczoo-tests/absent", hub_file="genres.tar.gz"),
                   md5_sum=None)
    started = time.perf_counter()
    with pytest.raises(SystemExit) as e:
        main(["download", "gtzan", "--root", str(tmp_path)])
    seconds = time.perf_counter() - started
    out, err = capfd.readouterr()
    refused = "cannot reach the server ([Errno 111] Connection refused); check the network connection or proxy"
    assert e.value.code == 2 and not out and err.strip().splitlines() == [
        (f"musiczoo download: error: genres.tar.gz: every source failed ({url}: {refused}; "
         f"hf://datasets/musiczoo-tests/absent/genres.tar.gz: {refused})")]
    assert seconds < 5, seconds  # the first of the Hub's retries alone would wait 1 s, all of them 23 s
    assert list(tmp_path.iterdir()) == []


def hostile_tar(kind: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("genres/blues/blues.00000.au")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"data"))
        if kind == "symlink":
            link = tarfile.TarInfo("genres/evil")
            link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tar.addfile(link)
        else:
            evil = tarfile.TarInfo({"dotdot": "../escaped.txt", "absolute": "/tmp/musiczoo-escaped.txt"}[kind])
            evil.size = 4
            tar.addfile(evil, io.BytesIO(b"evil"))
    return buffer.getvalue()


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink"])
def test_hostile_tar_members_are_refused(server, monkeypatch, tmp_path, kind):
    root = tmp_path / "root"
    Files.files["/genres.tar.gz"] = hostile_tar(kind)
    point_gtzan_at(monkeypatch, Source(url=f"{server}/genres.tar.gz"), md5_sum=None)
    with pytest.raises(UnsafeArchiveError, match="refusing the archive"):
        download("gtzan", root, progress=False)
    assert not (tmp_path / "escaped.txt").exists() and not Path("/tmp/musiczoo-escaped.txt").exists()
    assert not (root / "genres").exists() and not list(root.glob(".extracting-*"))


def mtat_release(members: dict[str, bytes]) -> tuple[list[bytes], bytes]:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    data = buffer.getvalue()
    third = len(data) // 3
    return [data[:third], data[third:2 * third], data[2 * third:]], data


def point_mtat_at(monkeypatch, server: str):
    files = tuple(RemoteFile(f.name, (Source(url=f"{server}/{f.name}"),)) for f in dl.RELEASES["mtat"].files)
    monkeypatch.setitem(dl.RELEASES, "mtat", replace(dl.RELEASES["mtat"], files=files, lists=(), derive=None))


def test_mtat_split_zip_is_joined_and_extracted(server, monkeypatch, tmp_path):
    parts, _ = mtat_release({"0/a-b-01-c-0-29.mp3": b"mp3 one", "f/x-y-02-z-30-59.mp3": b"mp3 two"})
    for i, part in enumerate(parts, 1):
        Files.files[f"/mp3.zip.00{i}"] = part
    Files.files["/annotations_final.csv"] = b'"clip_id"\t"guitar"\t"mp3_path"\n'
    Files.files["/clip_info_final.csv"] = b'"clip_id"\t"title"\n'
    point_mtat_at(monkeypatch, server)
    reports = download("mtat", tmp_path, progress=False)
    assert [r.name for r in reports] == ["mp3.zip.001", "mp3.zip.002", "mp3.zip.003", "annotations_final.csv",
                                          "clip_info_final.csv"]
    assert (tmp_path / "0" / "a-b-01-c-0-29.mp3").read_bytes() == b"mp3 one"
    assert (tmp_path / "f" / "x-y-02-z-30-59.mp3").read_bytes() == b"mp3 two"
    assert (tmp_path / "annotations_final.csv").is_file() and not list(tmp_path.glob("*.zip"))


def test_a_zip_member_escaping_the_root_is_refused(server, monkeypatch, tmp_path):
    parts, _ = mtat_release({"0/fine.mp3": b"ok", "../../escaped.mp3": b"evil"})
    for i, part in enumerate(parts, 1):
        Files.files[f"/mp3.zip.00{i}"] = part
    Files.files["/annotations_final.csv"] = Files.files["/clip_info_final.csv"] = b"x"
    point_mtat_at(monkeypatch, server)
    with pytest.raises(UnsafeArchiveError, match="'../../escaped.mp3' would be written outside"):
        download("mtat", tmp_path / "root", progress=False)
    assert not (tmp_path / "escaped.mp3").exists() and not (tmp_path / "root" / "0").exists()


def test_the_hugging_face_mirror_is_tried_after_a_dead_link(server, monkeypatch, gtzan_tarball, tmp_path):
    """The Hub is never contacted: ``hf_hub_download`` is replaced by a stand-in that records its call."""
    import huggingface_hub

    cached = tmp_path / "hub-cache" / "genres.tar.gz"
    cached.parent.mkdir()
    cached.write_bytes(gtzan_tarball)
    calls = []
    monkeypatch.setattr(huggingface_hub, "hf_hub_download",
                        lambda repo, filename, **kw: calls.append((repo, filename, kw)) or str(cached))
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", server)  # what is asked whether the Hub answers
    mirror = dl.RELEASES["gtzan"].files[0].sources[1]
    assert (mirror.hub_repo, mirror.hub_file) == ("marsyas/gtzan", "data/genres.tar.gz")
    point_gtzan_at(monkeypatch, Source(url=f"{server}/dead/genres.tar.gz"), mirror, md5_sum=md5(gtzan_tarball))
    (report,) = download("gtzan", tmp_path / "root", progress=False)
    assert calls == [("marsyas/gtzan", "data/genres.tar.gz", {"repo_type": "dataset"})]
    assert [a.source for a in report.attempts] == [f"{server}/dead/genres.tar.gz", "hf://datasets/marsyas/gtzan/data/genres.tar.gz"]
    assert (tmp_path / "root" / "genres" / "rock" / "rock.00001.au").is_file()


def test_musiczoo_download_ends_verified(server, monkeypatch, tmp_path, capsys):
    """The whole GTZAN tarball layout (10 x 100 clips, tiny) through the command: fetched, unpacked, verified."""
    make_synthetic_gtzan(tmp_path / "src", seconds=0.1, sample_rate=8000, layout="genres")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(tmp_path / "src" / "genres", arcname="genres")
    Files.files["/genres.tar.gz"] = buffer.getvalue()
    point_gtzan_at(monkeypatch, Source(url=f"{server}/genres.tar.gz"), md5_sum=md5(buffer.getvalue()))
    main(["download", "gtzan", "--root", str(tmp_path / "gtzan"), "--workers", "1"])
    out = capsys.readouterr().out
    assert f"genres.tar.gz: {server}/genres.tar.gz: downloaded, MD5 matches the published checksum" in out
    assert out.strip().splitlines()[-1] == "usable: yes"


def test_disk_and_permission_failures_are_explained(server, monkeypatch, gtzan_tarball, tmp_path):
    """The process runs as root here, so a full disk and a read-only folder are simulated at the write."""
    import errno

    Files.files["/genres.tar.gz"] = gtzan_tarball
    point_gtzan_at(monkeypatch, Source(url=f"{server}/genres.tar.gz"), md5_sum=None)
    for error, message in ((OSError(errno.ENOSPC, "No space left on device"), "the disk is full; free space"),
                           (PermissionError(errno.EACCES, "Permission denied", "genres.tar.gz.part"),
                            "permission denied (genres.tar.gz.part); choose a --root you can write to")):
        def failing_fetch(url, part, progress, timeout, error=error):
            raise error

        monkeypatch.setattr(dl, "_http_fetch", failing_fetch)
        with pytest.raises(DownloadError, match=message.replace("(", r"\(").replace(")", r"\)")):
            download("gtzan", tmp_path, progress=False)


# ---- split lists -----------------------------------------------------------------------------
#: Where ../shared/data keeps a byte-identical copy of each list the downloads fetch.
SHARED_COPIES = {
    "splits/train_stratified.txt": "gtzan/train_stratified.txt", "splits/valid_stratified.txt": "gtzan/valid_stratified.txt",
    "splits/test_stratified.txt": "gtzan/test_stratified.txt", "splits/GTZANindex.txt": "gtzan/GTZANindex.txt",
    "splits/train_list_pub.cP": "mtat/jongpil/train_list_pub.cP", "splits/valid_list_pub.cP": "mtat/jongpil/valid_list_pub.cP",
    "splits/test_list_pub.cP": "mtat/jongpil/test_list_pub.cP", "splits/top50_tags.txt": "mtat/jongpil/top50_tags.txt",
    "splits/index_mtt.tsv": "mtat/musicnn/index_mtt.tsv",
}


def serve_lists(monkeypatch, server: str, shared: Path, dataset: str) -> None:
    """Serve the real lists from the loopback server; each list's first source points at it."""
    release = dl.RELEASES[dataset]
    lists = []
    for remote in release.lists:
        Files.files[f"/{remote.name}"] = (shared / SHARED_COPIES[remote.name]).read_bytes()
        lists.append(replace(remote, sources=(Source(url=f"{server}/{remote.name}"), *remote.sources)))
    monkeypatch.setitem(dl.RELEASES, dataset, replace(release, lists=tuple(lists)))


def test_the_recorded_checksums_are_those_of_the_published_lists(shared_data):
    for remote in dl.RELEASES["gtzan"].lists + dl.RELEASES["mtat"].lists:
        copy = shared_data / SHARED_COPIES[remote.name]
        assert (copy.stat().st_size, dl.file_digest(copy, "sha256")) == (remote.size, remote.sha256), remote.name
        assert all(source.url.startswith("https://raw.githubusercontent.com/") for source in remote.sources)


def test_gtzan_lists_only_on_a_machine_with_the_audio(server, monkeypatch, shared_data, gtzan_original, tmp_path, capsys):
    root = Path(shutil.copytree(gtzan_original, tmp_path / "gtzan", ignore=shutil.ignore_patterns("splits")))
    serve_lists(monkeypatch, server, shared_data, "gtzan")
    main(["download", "gtzan", "--root", str(root), "--lists-only"])
    out = capsys.readouterr().out
    assert out.count("SHA-256 matches the recorded checksum") == 4 and "verify" not in out
    assert [path for path, _ in Files.requests] == [f"/splits/{word}_stratified.txt" for word in ("train", "valid", "test")] + ["/splits/GTZANindex.txt"]
    for name, copy in list(SHARED_COPIES.items())[:4]:
        assert (root / name).read_bytes() == (shared_data / copy).read_bytes()
    items = GTZANDataModule(str(root), split="stratified").split_items()
    assert {part: len(v) for part, v in items.items()} == {"train": 500, "val": 250, "test": 250}
    index = artists([root])
    assert len(index) == 1000 and index["blues.00000.wav"] == "John Lee Hooker"


def test_mtat_lists_are_checked_and_the_top50_split_derived(server, monkeypatch, shared_data, tmp_path, capsys):
    serve_lists(monkeypatch, server, shared_data, "mtat")
    main(["download", "mtat", "--root", str(tmp_path / "mtat"), "--lists-only"])
    out = capsys.readouterr().out
    assert out.count("SHA-256 matches the recorded checksum") == 5
    assert "splits/: derived: derived the top-50 split: train 15,244 / val 1,529 / test 4,332 clips" in out
    assert [len(load_top50_split(tmp_path / "mtat", part)) for part in ("train", "val", "test")] == [15244, 1529, 4332]


def test_a_list_that_changed_at_its_source_is_refused_and_the_next_source_tried(server, monkeypatch, shared_data, tmp_path):
    serve_lists(monkeypatch, server, shared_data, "gtzan")
    Files.files["/splits/GTZANindex.txt"] = Files.files["/splits/GTZANindex.txt"].replace(b"John Lee Hooker", b"John Lee Hookr ")
    monkeypatch.setitem(dl.RELEASES, "gtzan", replace(dl.RELEASES["gtzan"], lists=tuple(
        replace(r, sources=r.sources[:1] + (Source(url=f"{server}/mirror/{r.name}"),)) for r in dl.RELEASES["gtzan"].lists)))
    Files.files["/mirror/splits/GTZANindex.txt"] = (shared_data / "gtzan" / "GTZANindex.txt").read_bytes()
    reports = download("gtzan", tmp_path / "gtzan", progress=False, lists_only=True)
    index = next(r for r in reports if r.name == "splits/GTZANindex.txt")
    assert "does not match the recorded" in index.attempts[0].outcome and index.attempts[1].outcome.startswith("downloaded")
    assert (tmp_path / "gtzan" / "splits" / "GTZANindex.txt").read_bytes() == Files.files["/mirror/splits/GTZANindex.txt"]
    assert not list((tmp_path / "gtzan" / "splits").glob("*.part"))
