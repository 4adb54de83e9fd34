"""Job-page sessions bound to this server's origin, and the ``Origin`` rule for state changes.

No cookie: browsers scope cookies by host, not port, so a cookie of ``127.0.0.1:8910`` goes to every web
server on 127.0.0.1 (a dev server, a notebook, a job's exposed port), and any of them could replay it. The
page keeps its session id in ``sessionStorage``, which browsers scope by origin (scheme, host *and*
port), and sends it in the :data:`SESSION_HEADER` header. No browser adds that header by itself and a page
of another origin cannot add it (a custom header needs a CORS preflight this server never grants), so a
session works only from this server's own pages; being a header, it is the CSRF defence too.

State changes that carry an ``Origin`` must come from this server's own origin (:func:`foreign_origin`):
another port of the same host is another site.
"""

from __future__ import annotations

import contextlib
import ipaddress
import secrets
import time
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.types import Scope

#: The header the page's script sends its session in (never a cookie: see the module's docstring).
SESSION_HEADER = "X-HFJobs-Session"
#: A page session lasts this long (ids are kept in memory only; a restart forgets them).
SESSION_SECONDS = 12 * 3600
#: Sessions kept at most; the oldest goes first (each login makes one).
MAX_SESSIONS = 256
DEFAULT_PORTS = {"http": 80, "https": 443}


class PageSessions:
    """The live session ids of one server's job pages, in memory: random ids, never the token."""

    def __init__(self) -> None:
        self._expiry: dict[str, float] = {}  # session id -> when it expires (time.monotonic)

    def open(self) -> str:
        """A new session id (expired ones, then the oldest beyond :data:`MAX_SESSIONS`, are dropped)."""
        now = time.monotonic()
        for sid, expires in list(self._expiry.items()):
            if expires < now:
                del self._expiry[sid]
        while len(self._expiry) >= MAX_SESSIONS:
            del self._expiry[next(iter(self._expiry))]
        sid = secrets.token_urlsafe(32)
        self._expiry[sid] = now + SESSION_SECONDS
        return sid

    def of(self, request: Request) -> str | None:
        """The request's live session id, from :data:`SESSION_HEADER` only (cookies are ignored)."""
        sid = request.headers.get(SESSION_HEADER, "")
        expires = self._expiry.get(sid) if sid else None
        if expires is None:
            return None
        if expires < time.monotonic():
            self.close(sid)
            return None
        return sid

    def close(self, sid: str) -> None:
        self._expiry.pop(sid, None)


def is_loopback_name(host: str) -> bool:
    """``localhost``, 127.0.0.0/8 or ::1."""
    if host == "localhost":
        return True
    with contextlib.suppress(ValueError):
        return ipaddress.ip_address(host).is_loopback
    return False


def origin_parts(origin: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of a serialized origin, the port made explicit; ``None`` for anything else
    (``null``, a path, user info, a scheme other than http/https)."""
    with contextlib.suppress(ValueError):
        parts = urlsplit(origin.strip())
        scheme = parts.scheme.lower()
        if scheme not in DEFAULT_PORTS or parts.path or parts.query or parts.fragment or "@" in parts.netloc:
            return None
        host = (parts.hostname or "").rstrip(".")
        return (scheme, host, parts.port or DEFAULT_PORTS[scheme]) if host else None
    return None


def foreign_origin(origin: str, scope: Scope, host_header: str) -> str | None:
    """Why a state change sent with this ``Origin`` is refused, or ``None`` when it is this server's own:
    the origin the request was addressed to (its scheme and ``Host``: host and port), or the address this
    connection reached (and ``localhost`` for a loopback one) at the same port: ``localhost:P`` for
    ``127.0.0.1:P``. Another port of the same host is another site (a dev server's page, a job's exposed
    port), and so is another loopback address (``127.0.0.2:P`` may be another server)."""
    scheme = str(scope.get("scheme", "http"))
    own = origin_parts(f"{scheme}://{host_header.strip()}")
    seen = origin_parts(origin)
    address, port = scope.get("server") or ("", None)
    aliases = {str(address), *(["localhost"] if is_loopback_name(str(address)) else [])}
    if seen is not None and (seen == own or (seen[0] == scheme and seen[1] in aliases and seen[2] == port)):
        return None
    mine = f"{own[0]}://{host_header.strip()}" if own else "this server's address"
    return (
        f"Cross-site request from Origin {origin!r} refused: only this local Jobs server's own pages "
        f"({mine}) may change it, not a page of another site nor of another port of the same host."
    )
