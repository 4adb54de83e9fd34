"""What both hooks share: the ``hf_jobs`` connection and its credentials, TLS settings, and the rules
that turn a transport failure into one clear error.

Nothing here sends a request; :mod:`.sync` (``requests``) and :mod:`.async_` (httpx and the lean
transport) do.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import os
import platform
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from airflow.providers.common.compat.sdk import BaseHook, mask_secret

from airflow_provider_hfjobs import __version__
from airflow_provider_hfjobs.exceptions import HfJobsInputError, HfJobsTLSError
from airflow_provider_hfjobs.jobs import DEFAULT_ENDPOINT, RetryPolicy, validate_namespace

#: Where ``requests`` (the first two) and OpenSSL/httpx (the last two) look for CA certificates, in the
#: order they are asked: both hooks and the lean transport verify against the same ones.
CA_ENVIRONMENT = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR")


@dataclass(frozen=True)
class HfJobsCredentials:
    """Where and as whom to call the API. ``repr`` never shows the token."""

    endpoint: str
    token: str
    namespace: str | None = None
    source: str = "connection"
    #: A CA file or directory to verify the endpoint's certificate against (connection extra ``ca_bundle``).
    ca_bundle: str | None = None
    #: ``False`` (connection extra ``verify: false``): no certificate verification at all.
    verify: bool = True

    def __repr__(self) -> str:
        return (
            f"HfJobsCredentials(endpoint={self.endpoint!r}, namespace={self.namespace!r}, "
            f"ca_bundle={self.ca_bundle!r}, verify={self.verify!r}, token=***)"
        )


def normalize_endpoint(host: str | None, port: int | None = None) -> str:
    """The connection's host as an endpoint URL: empty → huggingface.co; no scheme → https."""
    host = (host or "").strip().rstrip("/")
    if not host:
        return DEFAULT_ENDPOINT
    if "://" not in host:
        host = f"https://{host}"
    if port and host.count(":") < 2:
        host = f"{host}:{port}"
    return host


def credentials_from_connection(
    host: str | None, port: int | None, password: str | None, extra: Mapping[str, Any] | None
) -> HfJobsCredentials:
    """Read an ``hf_jobs`` connection: host = Hub endpoint, password = token, extras ``namespace``,
    ``ca_bundle`` (a CA file or directory) and ``verify`` (``false``: no certificate verification)."""
    extra = extra or {}
    token = (password or "").strip()
    if not token:
        raise HfJobsInputError(
            "the Hugging Face connection has no token: put a token (hf_...) with write access in its password."
        )
    namespace = extra.get("namespace") or extra.get("extra__hf_jobs__namespace") or None
    if namespace is not None:
        validate_namespace(str(namespace))
    endpoint = normalize_endpoint(host or extra.get("endpoint"), port)
    ca_bundle = extra.get("ca_bundle") or extra.get("extra__hf_jobs__ca_bundle") or None
    if ca_bundle is not None and not isinstance(ca_bundle, str):
        raise HfJobsInputError(
            f"the connection's ca_bundle extra must be the path of a CA file or directory; got {ca_bundle!r}."
        )
    verify = _flag(extra.get("verify", True), "verify", default=True)
    insecure = _flag(extra.get("allow_insecure_http", False), "allow_insecure_http", default=False)
    check_plain_http(endpoint, insecure, "connection")
    return HfJobsCredentials(
        endpoint=endpoint, token=token, namespace=namespace, ca_bundle=ca_bundle, verify=verify
    )


#: The environment's way (with ``HF_TOKEN``/``HF_ENDPOINT``) to allow a plain-HTTP endpoint beyond this machine.
ALLOW_INSECURE_HTTP_ENV = "HFJOBS_ALLOW_INSECURE_HTTP"


def _flag(value: Any, name: str, *, default: bool) -> bool:
    """A connection extra that is true or false (a string from the UI form too; empty: ``default``)."""
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0", "yes", "no", ""):
        text = value.strip().lower()
        return default if not text else text in ("true", "1", "yes")
    if not isinstance(value, bool):
        raise HfJobsInputError(f"the connection's {name} extra must be true or false; got {value!r}.")
    return value


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_plain_http(endpoint: str, allowed: bool, where: str) -> None:
    """An ``http://`` endpoint on a host other than this machine would carry the token (and every secret of
    a create) in clear: refused unless allowed in so many words. Loopback (the local Jobs server) is fine."""
    try:
        parts = urlsplit(endpoint)
        host = parts.hostname or ""
    except ValueError:  # not a URL at all: check_http_credentials says what to fix
        return
    if parts.scheme != "http" or allowed or _is_loopback(host):
        return
    how = (
        'set the connection extra {"allow_insecure_http": true}'
        if where == "connection"
        else f"set {ALLOW_INSECURE_HTTP_ENV}=1"
    )
    raise HfJobsInputError(
        f"the Hub endpoint {endpoint} is plain HTTP to another machine: the token and the jobs' secrets would "
        f"travel in clear. Use https://, or, on a network you trust (a proxy on this machine's LAN), {how}."
    )


def tls_verify_setting(
    ca_bundle: str | None = None, verify: bool = True, environ: Mapping[str, str] = os.environ
) -> str | bool:
    """What to verify server certificates against: the one CA rule of both hooks and the lean transport.

    ``False`` (no verification), else the connection's ``ca_bundle``, else the first of
    :data:`CA_ENVIRONMENT` that is set (a file or a directory), else ``True``: certifi's bundle, as
    ``requests`` and ``httpx`` use by default."""
    if not verify:
        return False
    named = [("the connection's ca_bundle extra", ca_bundle)] + [
        (name, environ.get(name)) for name in CA_ENVIRONMENT
    ]
    for source, path in named:
        if path:
            if not os.path.exists(path):
                raise HfJobsInputError(
                    f"{source} is {path!r}, which does not exist: point it at a PEM file (or a directory) of "
                    "CA certificates."
                )
            return path
    return True


def credentials_from_environment(environ: Mapping[str, str], conn_id: str) -> HfJobsCredentials:
    """Fallback like ``huggingface_hub``: ``HF_TOKEN`` and ``HF_ENDPOINT`` (and ``HF_JOBS_NAMESPACE``)."""
    token = (environ.get("HF_TOKEN") or "").strip()
    if not token:
        raise HfJobsInputError(
            f"no Airflow connection {conn_id!r} and no HF_TOKEN: create the connection (type hf_jobs, password "
            "= your Hugging Face token) or set HF_TOKEN."
        )
    namespace = environ.get("HF_JOBS_NAMESPACE") or None
    if namespace:
        validate_namespace(namespace)
    endpoint = normalize_endpoint(environ.get("HF_ENDPOINT"))
    check_plain_http(
        endpoint, environ.get(ALLOW_INSECURE_HTTP_ENV, "").lower() in ("1", "true", "yes"), "env"
    )
    return HfJobsCredentials(
        endpoint=endpoint,
        token=token,
        namespace=namespace,
        source="env",
    )


def user_agent() -> str:
    return f"airflow-provider-hfjobs/{__version__}; python/{platform.python_version()}"


class _HfJobsHookBase(BaseHook):
    """What the sync and async hooks share: connection identity, settings and credential rules."""

    conn_name_attr = "hf_conn_id"
    default_conn_name = "hf_default"
    conn_type = "hf_jobs"
    hook_name = "Hugging Face Jobs"

    def __init__(
        self,
        hf_conn_id: str = default_conn_name,
        *,
        namespace: str | None = None,
        retry_policy: RetryPolicy | None = None,
        request_timeout: float = 60.0,
    ) -> None:
        super().__init__()
        self.hf_conn_id = hf_conn_id
        self._namespace = validate_namespace(namespace) if namespace else None
        self.retry_policy = retry_policy or RetryPolicy()
        self.request_timeout = request_timeout

    def _tls_verify(self, creds: HfJobsCredentials) -> str | bool:
        """The CA setting of this hook's requests (:func:`tls_verify_setting`); verification turned off
        is said loudly."""
        setting = tls_verify_setting(creds.ca_bundle, creds.verify)
        if setting is False:
            self.log.warning(
                "TLS certificate verification is OFF for %s (connection extra verify=false): anyone on the "
                "network path can read the token and forge answers. Set the ca_bundle extra instead.",
                creds.endpoint,
            )
        return setting

    def _credentials_from(self, conn: Any, extra: Mapping[str, Any] | None) -> HfJobsCredentials:
        """Credentials from a looked-up connection, or (``conn`` None: not found) from the environment;
        the token is registered with the secrets masker either way."""
        if conn is None:
            if self.hf_conn_id != self.default_conn_name:
                raise HfJobsInputError(
                    f"Airflow connection {self.hf_conn_id!r} does not exist: create it (type hf_jobs, password = "
                    "your Hugging Face token) or pass hf_conn_id of an existing one."
                )
            creds = credentials_from_environment(os.environ, self.hf_conn_id)
        else:
            creds = credentials_from_connection(conn.host, conn.port, conn.password, extra)
        mask_secret(creds.token)
        return creds


def shared_ssl_context(verify: str | bool | None = None) -> ssl.SSLContext:
    """One TLS context per CA setting (``None``: the environment's, see :func:`tls_verify_setting`) for
    every async client in the process. httpx builds a new one per client by default: about 27 ms of CPU
    and 0.8 MB each, which for 2,000 triggers is a minute of CPU and 1.6 GB."""
    return _ssl_context(tls_verify_setting() if verify is None else verify)


@functools.cache
def _ssl_context(verify: str | bool) -> ssl.SSLContext:
    if verify is False:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    if verify is True:
        import certifi

        return ssl.create_default_context(cafile=certifi.where())
    try:
        if os.path.isdir(verify):
            return ssl.create_default_context(capath=verify)
        return ssl.create_default_context(cafile=verify)
    except (OSError, ssl.SSLError) as exc:
        raise HfJobsInputError(
            f"the CA certificates at {verify!r} cannot be loaded ({exc}): point REQUESTS_CA_BUNDLE, "
            "SSL_CERT_FILE or the connection's ca_bundle extra at a PEM file of CA certificates."
        ) from None


class _RecentCredentials:
    """Credentials looked up in the last few seconds, by connection id, for this process.

    A triggerer (re)starting thousands of triggers on one connection would otherwise ask Airflow for it
    thousands of times in a burst (about a millisecond each, on the event loop: half of a trigger's start).
    Kept only briefly, so an edited connection is used by the next task within seconds. Callers that find
    no entry while a look-up is under way join it (:meth:`shared`): before, the thousands of triggers that
    started while the first look-up was in flight each made their own (5,000 of 10,000 in a benchmark)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._entries: dict[str, tuple[float, HfJobsCredentials]] = {}
        self._looking: dict[tuple[str, asyncio.AbstractEventLoop], asyncio.Future[HfJobsCredentials]] = {}

    def get(self, conn_id: str) -> HfJobsCredentials | None:
        entry = self._entries.get(conn_id)
        if entry is None or time.monotonic() - entry[0] > self.seconds:
            return None
        return entry[1]

    def put(self, conn_id: str, credentials: HfJobsCredentials) -> None:
        self._entries[conn_id] = (time.monotonic(), credentials)

    async def shared(
        self, conn_id: str, look_up: Callable[[], Awaitable[HfJobsCredentials]]
    ) -> HfJobsCredentials:
        """The recent entry, else the result of the look-up under way for ``conn_id`` in this event loop,
        else of ``look_up()``, run as a task of its own that every caller meanwhile joins (a cancelled
        caller does not cancel it for the others; its error is everyone's, as each would have had it)."""
        if (found := self.get(conn_id)) is not None:
            return found
        key = (conn_id, asyncio.get_running_loop())
        future = self._looking.get(key)
        if future is None:
            future = self._looking[key] = asyncio.ensure_future(look_up())
            future.add_done_callback(lambda done: self._done(key, done))
        return await asyncio.shield(future)

    def _done(self, key: tuple[str, asyncio.AbstractEventLoop], future: asyncio.Future[Any]) -> None:
        if self._looking.get(key) is future:
            del self._looking[key]
        if not future.cancelled():
            future.exception()  # retrieved: callers that were cancelled meanwhile must not leave it unseen

    def clear(self) -> None:
        self._entries.clear()


_recent_credentials = _RecentCredentials(seconds=5.0)


def _first_sentence(error: Exception) -> str:
    return str(error).split(". ", 1)[0]


def _in_chain(exc: BaseException, match: Callable[[BaseException], bool]) -> BaseException | None:
    """The first exception in ``exc``'s chain (cause, context, or a wrapped first argument, the way
    requests and urllib3 wrap) that ``match`` accepts."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if match(current):
            return current
        current = (
            current.__cause__
            or current.__context__
            or (current.args[0] if current.args and isinstance(current.args[0], BaseException) else None)
        )
    return None


def _connection_refused(exc: BaseException) -> bool:
    return (
        _in_chain(
            exc, lambda e: isinstance(e, ConnectionRefusedError) or "NewConnectionError" in type(e).__name__
        )
        is not None
    )


def _raise_if_tls(exc: BaseException, action: str, endpoint: str) -> None:
    """A certificate that did not verify is said as one, and not retried, on every transport (requests,
    httpx, the lean one); any other failure is left to the caller."""
    cert = _in_chain(exc, lambda e: isinstance(e, ssl.SSLCertVerificationError))
    if cert is None:
        return
    reason = getattr(cert, "verify_message", None) or str(cert)
    host = urlsplit(endpoint).hostname or endpoint
    raise HfJobsTLSError(
        f"Could not {action}: TLS certificate verification failed for {host}: {reason}. If its certificate "
        "comes from a private CA, set REQUESTS_CA_BUNDLE or the connection's ca_bundle extra to that CA's PEM "
        "file."
    ) from None
