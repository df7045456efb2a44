"""Who may talk to the listening room, and how much they may send: one ASGI layer before every route.

One layer rather than a check in each route, so a route added later (or the static files) cannot
forget it. It refuses, before any route runs or any body byte is read:

- a ``Host`` that is not this server's (400): a page on a DNS-rebinding domain (``evil.example``
  re-pointed at 127.0.0.1) is same-origin to itself, so the browser would let it read the API;
  its requests still carry ``Host: evil.example``. Accepted: the loopback names, the ``--host``
  the server was started with, and, when that is a wildcard (``0.0.0.0``, ``::``), any IP
  address (a rebinding page always has a name, never an address). The same rule as Jupyter's
  host check (``allow_remote_access``, ``local_hostnames``).
- a state-changing request (POST, PUT, DELETE, PATCH) from another site (403): a multipart
  upload or a form post needs no CORS preflight, so any page could send one. A browser names
  the page in ``Origin`` (and in ``Sec-Fetch-Site``); it must be this very server. Requests
  without either (curl, scripts) are not a browser's cross-site requests and pass.
- a body larger than its route's limit (413): by ``Content-Length`` before reading, and, for a
  chunked body, by counting while it streams, so it stops at the limit instead of after the whole
  body has been spooled to the temporary folder.
"""

from __future__ import annotations

import ipaddress

from fastapi import HTTPException
from starlette.datastructures import Headers
from starlette.responses import JSONResponse

LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})
WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", ""})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
UPLOAD_PATH = "/api/upload"
#: What a multipart body adds around the file (boundaries, part headers, the file name).
MULTIPART_SLACK = 64 * 2**10
#: The body limit of every other route: a JSON request (a list of liked tracks and options).
MAX_JSON_BYTES = 2**20


def upload_too_large(max_upload_bytes: int) -> str:
    return f"upload too large: at most {max_upload_bytes // 2**20} MiB"


def host_name(header: str) -> str | None:
    """The name in a ``Host`` header (lower case, port and IPv6 brackets removed); None if malformed."""
    if header.startswith("["):
        name, closed, port = header[1:].partition("]")
        if not closed or (port and not (port[0] == ":" and port[1:].isdigit())):
            return None
    else:
        name, colon, port = header.partition(":")
        if colon and not port.isdigit():
            return None
    return name.lower() or None


def is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` when a streamed body passes its limit; the framework answers it as a 413."""

    def __init__(self, detail: str) -> None:
        super().__init__(413, detail)


class RequestGuard:
    """ASGI middleware: the host check, the cross-site check and the body limits of the module docstring."""

    def __init__(self, app, *, host: str, max_upload_bytes: int) -> None:
        self.app = app
        bind = host.strip("[]").lower()
        self.names = LOOPBACK_NAMES | {bind}
        self.any_address = bind in WILDCARD_HOSTS
        self.max_upload_bytes = max_upload_bytes

    def host_allowed(self, header: str | None) -> bool:
        name = host_name(header or "")
        return name is not None and (name in self.names or (self.any_address and is_address(name)))

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = Headers(scope=scope)
        host = headers.get("host")
        if not self.host_allowed(host):
            return await self.refuse(scope, receive, send, 400, f"Host {host!r} is not this server's name: open "
                                     "it as http://127.0.0.1:PORT/ or http://localhost:PORT/ (or serve with --host)")
        if scope["method"] not in SAFE_METHODS:
            origin = headers.get("origin")
            site = headers.get("sec-fetch-site")
            if (origin is not None and origin.lower() != f"http://{host.lower()}") or site in ("cross-site", "same-site"):
                return await self.refuse(scope, receive, send, 403, f"cross-site {scope['method']} refused: "
                                         f"from {origin or site}, not from this server's own page")
        if scope["path"] == UPLOAD_PATH:
            limit, message = self.max_upload_bytes + MULTIPART_SLACK, upload_too_large(self.max_upload_bytes)
        else:
            limit, message = MAX_JSON_BYTES, f"request body too large: at most {MAX_JSON_BYTES // 2**10} KiB"
        declared = headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            return await self.refuse(scope, receive, send, 413 if declared.isdigit() else 400,
                                     message if declared.isdigit() else f"bad Content-Length {declared!r}")
        received = 0

        async def receive_at_most():
            nonlocal received
            message_in = await receive()
            received += len(message_in.get("body", b""))
            if received > limit:
                raise BodyTooLarge(message)
            return message_in

        await self.app(scope, receive_at_most, send)

    @staticmethod
    async def refuse(scope, receive, send, status: int, detail: str) -> None:
        await JSONResponse({"detail": detail}, status_code=status)(scope, receive, send)
