"""What the checked, resumable download costs over loopback, against one plain request.

A file of ``--mib`` random bytes is served by a local HTTP server with range support;
in one run it is fetched

* by one plain request streamed to disk (``urllib`` + ``shutil.copyfileobj``): the baseline;
* by ``datamodules.download.fetch`` (progress bar off, MD5 check, rename into place);
* by ``fetch`` with the connection dropped halfway, then resumed with a range request: the
  cost of an interruption.

Loopback has no network latency, so the ratios show the tool's own overhead (the MD5 pass
over the file dominates), not what a slow mirror would add.

    python benchmarks/download_speed.py [--mib 256]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from datamodules.download import DownloadError, RemoteFile, Source, fetch, file_digest


def serve(path: Path, drop_once: list[bool]) -> ThreadingHTTPServer:
    size = path.stat().st_size

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            start = int(self.headers["Range"].split("=")[1].split("-")[0]) if self.headers.get("Range") else 0
            self.send_response(206 if start else 200)
            self.send_header("Content-Length", str(size - start))
            self.end_headers()
            stop = start + (size - start) // 2 if drop_once and drop_once.pop() else size
            with open(path, "rb") as f:
                f.seek(start)
                remaining = stop - start
                while remaining > 0:
                    block = f.read(min(1 << 20, remaining))
                    self.wfile.write(block)
                    remaining -= len(block)
            if stop < size:
                self.connection.shutdown(socket.SHUT_RDWR)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=256)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        source = tmp / "served.bin"
        with open(source, "wb") as f:
            for _ in range(args.mib):
                f.write(os.urandom(1 << 20))
        drop: list[bool] = []
        httpd = serve(source, drop)
        url = f"http://127.0.0.1:{httpd.server_address[1]}/file"
        remote = RemoteFile("file.bin", (Source(url=url),), md5=file_digest(source))

        def plain():
            with urllib.request.urlopen(url) as response, open(tmp / "plain.bin", "wb") as out:
                shutil.copyfileobj(response, out, 1 << 20)

        def checked(root: Path):
            fetch(remote, root, progress=False)

        def interrupted(root: Path):
            drop.append(True)
            try:
                fetch(remote, root, progress=False)
            except DownloadError:
                pass
            fetch(remote, root, progress=False)

        rows = []
        for name, run in (("one plain request (baseline)", plain),
                          ("fetch: checked download", lambda: checked(tmp / "a")),
                          ("fetch: dropped halfway, then resumed", lambda: interrupted(tmp / "b"))):
            start = time.perf_counter()
            run()
            rows.append((name, time.perf_counter() - start))
        httpd.shutdown()
    print(f"{args.mib} MiB over loopback, {os.cpu_count()} cores")
    base = rows[0][1]
    for name, seconds in rows:
        print(f"  {name:<40} {seconds:6.2f} s  {args.mib / seconds:7.0f} MiB/s  {seconds / base:5.2f}x the baseline's time")


if __name__ == "__main__":
    main()
