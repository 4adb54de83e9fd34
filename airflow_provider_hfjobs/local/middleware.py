"""The local Jobs server's HTTP layer below the routes: ASGI middleware and request helpers.

- :class:`ProtocolHeaders`: one RFC 1123 ``Date`` and an ``X-Request-Id`` on every response;
- :class:`HostGuard`: only requests addressed to a loopback name (or an allowed host), no state change
  from another origin's page (a job is a command run as the developer);
- :class:`FaultMiddleware`: the injected faults of :mod:`.faults`, on API requests only;
- :func:`read_body`: a request body, never more than ``MAX_BODY_BYTES`` of it in memory;
- :func:`request_kind`: what a request is, for ``/_local/stats``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import secrets
from collections.abc import Iterable
from email.utils import formatdate

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from airflow_provider_hfjobs.local.faults import FaultInjector
from airflow_provider_hfjobs.local.pages import is_page_path
from airflow_provider_hfjobs.local.sessions import foreign_origin

#: Largest request body read (a create body is a few KiB; a bigger one is a mistake or an attack).
MAX_BODY_BYTES = 1 << 20
#: A body over the limit is still read (and dropped) up to this size, so that the client gets the 413
#: instead of a connection reset mid-upload; past it the connection is closed.
DRAIN_BYTES = 64 << 20
#: Methods that change nothing: a cross-site page may send them (it cannot read the answers).
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: Scheduled-job routes by their last path part (``POST .../run`` is a trigger).
SCHEDULED_ACTIONS = {"suspend": "suspend", "resume": "resume", "schedule": "schedule", "run": "trigger",
                     "labels": "labels"}  # fmt: skip


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


class ProtocolHeaders:
    """ASGI middleware: one RFC 1123 ``Date`` (uvicorn's own is switched off) and an ``X-Request-Id``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (k, v)
                    for k, v in message.get("headers", [])
                    if k.lower() not in (b"date", b"x-request-id")
                ]
                headers.append((b"date", formatdate(usegmt=True).encode()))
                headers.append((b"x-request-id", f"Root=1-{secrets.token_hex(12)}".encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def host_of(authority: str) -> str:
    """The host of a ``Host`` header value, lower case, without port, brackets or a trailing dot."""
    authority = authority.strip().lower()
    if authority.startswith("["):
        return authority[1 : authority.find("]")] if "]" in authority else authority
    if authority.count(":") == 1:
        authority = authority.rsplit(":", 1)[0]
    return authority.rstrip(".")


def is_loopback(host: str) -> bool:
    """``localhost``, 127.0.0.0/8 or ::1; also a bare ``::1:PORT`` (IPv6 without brackets)."""
    if host == "localhost":
        return True
    candidates = [host, host.rsplit(":", 1)[0]] if host.count(":") > 1 else [host]
    for candidate in candidates:
        with contextlib.suppress(ValueError):
            if ipaddress.ip_address(candidate).is_loopback:
                return True
    return False


class HostGuard:
    """ASGI middleware: only requests addressed to a loopback name or an allowed host, and no state
    change sent by a page of another origin (``Origin``; another port of this host is one).

    A page on evil.example can make the browser send requests to 127.0.0.1 (a form post) or, by
    rebinding evil.example's DNS to 127.0.0.1, read the answers too; the ``Host`` and ``Origin`` headers
    are the browser's own, so they say where the request really came from.
    """

    def __init__(self, app: ASGIApp, allowed_hosts: Iterable[str] = ()) -> None:
        self.app = app
        self.allowed = frozenset(host_of(host) for host in allowed_hosts)

    def allows(self, host: str) -> bool:
        return "*" in self.allowed or host in self.allowed or is_loopback(host)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        host = host_of(host_header := headers.get("host", ""))
        origin = headers.get("origin")
        refusal: JSONResponse | None = None
        if not host:
            refusal = error(400, "A Host header is required")
        elif not self.allows(host):
            refusal = error(
                421,
                f"Host {host!r} is not allowed: this local Jobs server only answers requests addressed to "
                f"127.0.0.1, localhost or [::1] (a guard against DNS rebinding). To reach it as {host!r}, "
                f"start it with --allow-host {host} (allowed_hosts=[{host!r}] in LocalJobsServer).",
            )
        elif origin is not None and scope["method"] not in SAFE_METHODS:  # this server's own origin only
            refusal = error(403, problem) if (problem := foreign_origin(origin, scope, host_header)) else None
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes | None:
    """The request body, or ``None`` if it is longer than ``limit``: never more than that in memory."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > DRAIN_BYTES:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > DRAIN_BYTES:
            return None
        if size <= limit:
            chunks.append(chunk)
        else:
            chunks.clear()
    return None if size > limit else b"".join(chunks)


def too_large_message(limit: int = MAX_BODY_BYTES) -> str:
    size = f"{limit >> 20} MiB" if limit % (1 << 20) == 0 else f"{limit} bytes"
    return f"Request body too large: the local Jobs server accepts at most {size}"


def too_large(limit: int = MAX_BODY_BYTES) -> JSONResponse:
    return error(413, too_large_message(limit))


class InjectedCut(Exception):
    """Raised inside a log stream to drop the connection mid-body (a ``cut`` fault, a server going away)."""


class _HideInjectedCuts(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], InjectedCut))


logging.getLogger("uvicorn.error").addFilter(_HideInjectedCuts())
CUT_SCOPE_KEY = "hfjobs.cut_after_events"


def scheduled_request_kind(method: str, parts: list[str]) -> str:
    """``scheduled-create``, ``scheduled-list``, ``scheduled-inspect``, ``scheduled-delete``,
    ``scheduled-suspend``, ... for ``/api/scheduled-jobs/...``."""
    if len(parts) == 3:
        return "scheduled-create" if method == "POST" else "scheduled-list"
    if len(parts) == 4:
        return "scheduled-delete" if method == "DELETE" else "scheduled-inspect"
    action = SCHEDULED_ACTIONS.get(parts[4]) if len(parts) == 5 else None
    return f"scheduled-{action}" if action else "other"


def request_kind(method: str, path: str) -> str:
    """What an API request is, for the request counts of ``/_local/stats``."""
    parts = path.strip("/").split("/")
    if parts[:2] == ["api", "whoami-v2"]:
        return "whoami"
    if parts[:2] == ["api", "scheduled-jobs"] and len(parts) >= 3:
        return scheduled_request_kind(method, parts)
    if parts[:2] != ["api", "jobs"] or len(parts) < 3:
        return "other"
    if parts[2] == "hardware":
        return "hardware"
    if len(parts) == 3:
        return "create" if method == "POST" else "list"
    if len(parts) == 4:
        return "inspect"
    kinds = ("logs", "cancel", "labels", "metrics", "expose", "duplicate")
    return parts[4] if parts[4] in kinds else "other"


def is_control_or_page(path: str) -> bool:
    """``/_local`` control routes and the job pages: not API requests, so never counted nor faulted."""
    return path.startswith("/_local/") or is_page_path(path)


class FaultMiddleware:
    """ASGI middleware applying :mod:`.faults` to API requests (never to the ``/_local`` control routes
    nor the job pages)."""

    def __init__(self, app: ASGIApp, injector: FaultInjector) -> None:
        self.app = app
        self.injector = injector

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or is_control_or_page(scope["path"]):
            await self.app(scope, receive, send)
            return
        fault = self.injector.take(scope["method"], scope["path"])
        if fault is None:
            await self.app(scope, receive, send)
        elif fault.kind == "delay":
            await asyncio.sleep(fault.seconds)
            await self.app(scope, receive, send)
        elif fault.kind == "cut":
            await self.app({**scope, CUT_SCOPE_KEY: fault.after_events}, receive, send)
        else:
            if fault.forward:  # the request happens; only its answer is lost

                async def discard(message: Message) -> None:
                    return None

                await self.app(scope, receive, discard)
            headers = {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after is not None else None
            response = JSONResponse({"error": "injected fault"}, status_code=fault.status, headers=headers)
            await response(scope, receive, send)
