"""``HfJobsHook``: the HF Jobs REST API over ``requests``, for operators, sensors and DAG code.

Transport only: it reads the Airflow connection once, resolves the namespace once, sends requests with
one retry policy and hands bytes to :mod:`airflow_provider_hfjobs.jobs` and
:mod:`airflow_provider_hfjobs.sse`, which decide everything about the API. Method names and arguments are
``huggingface_hub``'s (``run_job``, ``inspect_job``, ``fetch_job_logs``, ``cancel_job`` ...).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import platform
import ssl
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from email.utils import parsedate_to_datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import quote, urlsplit

import httpx
from airflow.providers.common.compat.sdk import AirflowNotFoundException, BaseHook, mask_secret

from airflow_provider_hfjobs import __version__
from airflow_provider_hfjobs.exceptions import (
    HfJobsAPIError,
    HfJobsBadRequestError,
    HfJobsConnectionError,
    HfJobsInputError,
    HfJobsTLSError,
)
from airflow_provider_hfjobs.hooks.event_stream import (
    EventStream,
    EventStreamError,
    EventStreamTimeout,
    KeptConnection,
    read_capped,
)
from airflow_provider_hfjobs.jobs import (
    CREATE_NOT_APPLIED_STATUS,
    DEFAULT_ENDPOINT,
    DEFAULT_UV_IMAGE,
    SUBMISSION_LABEL,
    HardwareInfo,
    JobInfo,
    JobStage,
    RetryAttempts,
    RetryPolicy,
    body_limit,
    build_job_spec,
    build_uv_command,
    classify_uv_script,
    default_uv_job_name,
    error_for_response,
    json_answer,
    list_jobs_params,
    namespace_from_whoami,
    next_page_url,
    parse_timestamp,
    validate_job_id,
    validate_namespace,
)
from airflow_provider_hfjobs.sse import LogBatch, LogLine, LogReconnect, LogStreamParser

if TYPE_CHECKING:
    import requests  # imported where used: it costs a DAG file parse 35 ms, and only the sync hook needs it

#: Read timeout of a followed log stream: four missed 30 s keep-alives, as ``huggingface_hub``.
FOLLOW_READ_TIMEOUT = 120.0
#: Read timeout of a non-followed log read: the replay arrives at once, then the stream idles.
NO_FOLLOW_READ_TIMEOUT = 5.0
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
    verify = extra.get("verify", True)
    if isinstance(verify, str) and verify.strip().lower() in ("true", "false", "1", "0", "yes", "no", ""):
        verify = verify.strip().lower() not in ("false", "0", "no")
    if not isinstance(verify, bool):
        raise HfJobsInputError(f"the connection's verify extra must be true or false; got {verify!r}.")
    return HfJobsCredentials(
        endpoint=endpoint, token=token, namespace=namespace, ca_bundle=ca_bundle, verify=verify
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
    return HfJobsCredentials(
        endpoint=normalize_endpoint(environ.get("HF_ENDPOINT")),
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


class HfJobsHook(_HfJobsHookBase):
    """Talk to Hugging Face Jobs.

    :param hf_conn_id: an ``hf_jobs`` connection (host = Hub endpoint, empty for huggingface.co; password =
        token; extras ``namespace``, ``ca_bundle`` and ``verify``, see :func:`credentials_from_connection`).
        If the default connection does not exist, ``HF_TOKEN`` and ``HF_ENDPOINT`` are used, as
        ``huggingface_hub`` does. Certificates are verified as :func:`tls_verify_setting` says.
    :param namespace: user or organization owning the jobs; overrides the connection's. When neither says,
        it is resolved once through ``whoami`` (a heavily rate-limited endpoint) and cached.
    :param retry_policy: when and how long to retry connection errors, 408, 429 and 5xx.
    :param request_timeout: seconds to wait for a (non-streaming) answer.
    """

    # ---------------------------------------------------------------------------------------- connection
    @cached_property
    def credentials(self) -> HfJobsCredentials:
        """Read once: the connection (or the environment), with the token registered with the masker."""
        try:
            conn = self.get_connection(self.hf_conn_id)
        except AirflowNotFoundException:
            return self._credentials_from(None, None)
        return self._credentials_from(conn, conn.extra_dejson)

    @property
    def endpoint(self) -> str:
        return self.credentials.endpoint

    @cached_property
    def session(self) -> requests.Session:
        import requests

        session = requests.Session()
        session.headers.update({"User-Agent": user_agent(), "Accept": "application/json"})
        return session

    @cached_property
    def _verify(self) -> str | bool:
        """Passed to every request: a session's ``verify`` loses to ``REQUESTS_CA_BUNDLE`` (psf/requests#3829)."""
        return self._tls_verify(self.credentials)

    def close(self) -> None:
        if "session" in self.__dict__:
            self.session.close()

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.credentials.token}"}

    @property
    def namespace(self) -> str:
        """The namespace jobs run in: hook argument, else connection extra, else ``whoami`` (once)."""
        if self._namespace is None:
            self._namespace = self.credentials.namespace or namespace_from_whoami(self.whoami())
        return self._namespace

    def _ns(self, namespace: str | None) -> str:
        return validate_namespace(namespace) if namespace else self.namespace

    # ------------------------------------------------------------------------------------------- transport
    def _send(
        self,
        method: str,
        path: str,
        *,
        action: str,
        namespace: str | None = None,
        job_id: str | None = None,
        params: Any = None,
        json_body: Any = None,
        url: str | None = None,
        retry: bool = True,
        listing: bool = False,
    ) -> _Answer:
        """One request with the retry policy, its body read within :func:`.jobs.body_limit`; an HTTP
        error becomes one provider exception."""
        import requests

        target = url or f"{self.endpoint}{path}"
        attempts = RetryAttempts(self.retry_policy if retry else RetryPolicy(max_retries=0))
        while True:
            try:
                response = self.session.request(
                    method, target, params=params, json=json_body, headers=self._auth(),
                    timeout=self.request_timeout, stream=True, verify=self._verify,
                )  # fmt: skip
                content = _read_body(response, body_limit(response.status_code, listing=listing))
            except requests.RequestException as exc:
                _raise_if_tls(exc, action, self.endpoint)
                failure: Exception = HfJobsConnectionError(
                    f"Could not {action}: {self.endpoint} is unreachable ({type(exc).__name__})."
                )
                delay = attempts.after(failure)
            else:
                if response.status_code < 400:
                    return _Answer(response.status_code, response.headers, content)
                failure = error_for_response(
                    response.status_code, content, response.headers, action=action, namespace=namespace,
                    job_id=job_id,
                )  # fmt: skip
                delay = attempts.after(failure, status_code=response.status_code, headers=response.headers)
            self.log.warning("%s; retry %d in %.1fs", _first_sentence(failure), attempts.failures, delay)
            time.sleep(delay)

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        answer = self._send(method, path, **kwargs)
        return json_answer(answer.status_code, answer.content, action=kwargs["action"])

    # ------------------------------------------------------------------------------------------------ API
    def whoami(self) -> dict[str, Any]:
        """``GET /api/whoami-v2``: who the token belongs to."""
        return self._json("GET", "/api/whoami-v2", action="check the token (whoami)")

    def test_connection(self) -> tuple[bool, str]:
        """Airflow's "Test" button: one whoami call."""
        try:
            name = namespace_from_whoami(self.whoami())
        except Exception as exc:
            return False, str(exc)
        return True, f"Connected to {self.endpoint} as {name}."

    def run_job(
        self,
        *,
        image: str,
        command: list[str],
        env: Mapping[str, str] | None = None,
        secrets: Mapping[str, str] | None = None,
        flavor: str | None = None,
        timeout: int | float | str | None = None,
        labels: Mapping[str, str] | None = None,
        namespace: str | None = None,
        name: str | None = None,
    ) -> JobInfo:
        """Create a job (``POST /api/jobs/{namespace}``). Input is validated before anything is sent."""
        spec = build_job_spec(
            image=image, command=command, env=env, secrets=secrets, flavor=flavor, timeout=timeout, labels=labels,
            name=name,
        )  # fmt: skip
        for value in (secrets or {}).values():
            mask_secret(value)
        return self._create_job(self._ns(namespace), spec)

    def run_uv_job(
        self,
        script: str,
        *,
        script_args: list[str] | None = None,
        dependencies: list[str] | None = None,
        python: str | None = None,
        image: str | None = None,
        env: Mapping[str, str] | None = None,
        secrets: Mapping[str, str] | None = None,
        flavor: str | None = None,
        timeout: int | float | str | None = None,
        labels: Mapping[str, str] | None = None,
        namespace: str | None = None,
        name: str | None = None,
    ) -> JobInfo:
        """Run a UV script: a local ``.py`` path, an http(s) URL, or inline Python source.

        A URL is run by ``uv run <url>``. A local file or inline source travels inside the job spec
        (base64 in an environment variable, decoded into the job's working directory): nothing is
        uploaded to a Hub repo or bucket.
        """
        kind = classify_uv_script(script)
        if kind == "url":
            command, extra_env = build_uv_command(
                script_args=script_args, dependencies=dependencies, python=python, script_url=script
            )
        else:
            if kind == "file":
                path = Path(script).expanduser()
                if not path.is_file():
                    raise HfJobsInputError(
                        f"script file {script!r} does not exist: pass an existing .py path, an http(s) URL, or "
                        "inline Python source."
                    )
                source, script_name = path.read_bytes(), path.name
            else:
                source, script_name = script.encode("utf-8"), "script.py"
            command, extra_env = build_uv_command(
                script_args=script_args, dependencies=dependencies, python=python, script_source=source,
                script_name=script_name,
            )  # fmt: skip
        if env and set(env) & set(extra_env):
            raise HfJobsInputError(f"env may not set {', '.join(extra_env)}: it carries the script.")
        if name is None and not (labels and "name" in labels):
            name = default_uv_job_name(script, list(script_args or []))
        return self.run_job(
            image=image or DEFAULT_UV_IMAGE, command=command, env={**(env or {}), **extra_env}, secrets=secrets,
            flavor=flavor, timeout=timeout, labels=labels, namespace=namespace, name=name,
        )  # fmt: skip

    def _create_job(self, namespace: str, spec: dict[str, Any]) -> JobInfo:
        """Send a create at most once in effect.

        A create whose outcome is unknown (a 5xx, or a connection lost after sending) may have started the
        job, so it is never blindly re-sent: first look the job up by its submission label, and re-send
        only if it is not there. A refused connection, 408 or 429 means nothing was created.
        """
        import requests

        labels = spec.setdefault("labels", {})
        submission = labels.setdefault(SUBMISSION_LABEL, uuid.uuid4().hex)
        url = f"{self.endpoint}/api/jobs/{quote(namespace)}"
        action = f"create a job in namespace {namespace!r}"
        attempts = RetryAttempts(self.retry_policy)
        while True:
            status: int | None = None
            headers: Mapping[str, str] | None = None
            try:
                response = self.session.post(
                    url, json=spec, headers=self._auth(), timeout=self.request_timeout, stream=True,
                    verify=self._verify,
                )  # fmt: skip
                content = _read_body(response, body_limit(response.status_code))
            except (requests.ConnectTimeout, requests.exceptions.InvalidURL) as exc:
                applied, failure = False, HfJobsConnectionError(f"Could not {action}: {type(exc).__name__}.")
            except requests.ConnectionError as exc:
                _raise_if_tls(exc, action, self.endpoint)  # the handshake failed: nothing was sent
                # Refused before sending: nothing was created. Anything else may have reached the server.
                applied = not _connection_refused(exc)
                failure = HfJobsConnectionError(f"Could not {action}: {self.endpoint} is unreachable.")
            except requests.RequestException as exc:
                applied, failure = True, HfJobsConnectionError(f"Could not {action}: {type(exc).__name__}.")
            else:
                if response.status_code < 400:
                    return JobInfo.from_api(
                        json_answer(response.status_code, content, action=action), self.endpoint
                    )
                status, headers = response.status_code, response.headers
                applied = status not in CREATE_NOT_APPLIED_STATUS and status >= 500
                failure = error_for_response(status, content, headers, action=action, namespace=namespace)
                if status == 400 and isinstance(failure, HfJobsBadRequestError):
                    failure = self._explain_bad_create(spec, failure)
            delay = attempts.after(failure, status_code=status, headers=headers)
            self.log.warning("%s; retry %d in %.1fs", _first_sentence(failure), attempts.failures, delay)
            time.sleep(delay)
            if applied:
                existing = next(
                    iter(self.list_jobs(labels={SUBMISSION_LABEL: submission}, namespace=namespace)), None
                )
                if existing is not None:
                    self.log.info(
                        "The create did reach the server: job %s exists, not creating another.", existing.id
                    )
                    return existing

    def _explain_bad_create(self, spec: Mapping[str, Any], error: HfJobsBadRequestError) -> HfJobsAPIError:
        """A 400 on create is most often an unknown flavor: say so, with the valid ones."""
        flavor = spec.get("flavor")
        try:
            valid = [hw.name for hw in self.list_jobs_hardware()]
        except HfJobsAPIError:
            return error
        if flavor in valid or not valid:
            return error
        return HfJobsBadRequestError(
            f"Unknown flavor {flavor!r}: use one of {', '.join(valid)}.",
            status_code=error.status_code,
            server_message=error.server_message,
            request_id=error.request_id,
        )

    def inspect_job(self, job_id: str, *, namespace: str | None = None) -> JobInfo:
        """``GET /api/jobs/{namespace}/{id}``."""
        ns = self._ns(namespace)
        validate_job_id(job_id)
        data = self._json(
            "GET",
            f"/api/jobs/{quote(ns)}/{job_id}",
            action=f"inspect job {job_id}",
            namespace=ns,
            job_id=job_id,
        )
        return JobInfo.from_api(data, self.endpoint)

    def list_jobs(
        self,
        *,
        status: str | JobStage | Iterable[str | JobStage] | None = None,
        labels: Mapping[str, str] | None = None,
        namespace: str | None = None,
    ) -> Iterator[JobInfo]:
        """``GET /api/jobs/{namespace}``, filtered on the server by stage and labels, following ``Link`` pages."""
        ns = self._ns(namespace)
        params: Any = list_jobs_params(status, labels)
        url: str | None = f"{self.endpoint}/api/jobs/{quote(ns)}"
        action = f"list jobs in {ns!r}"
        while url:
            answer = self._send("GET", "", url=url, params=params, action=action, namespace=ns, listing=True)
            page = json_answer(answer.status_code, answer.content, action=action, listing=True)
            if not isinstance(page, list):
                raise HfJobsAPIError(
                    f"Could not {action}: the server answered a {type(page).__name__}, not a list of jobs.",
                    status_code=answer.status_code,
                )
            for item in page:
                yield JobInfo.from_api(item, self.endpoint)
            url, params = next_page_url(answer.headers.get("Link"), url), None

    def cancel_job(self, job_id: str, *, namespace: str | None = None) -> JobInfo | None:
        """``POST /api/jobs/{namespace}/{id}/cancel``; returns the job if the server sent it back."""
        ns = self._ns(namespace)
        validate_job_id(job_id)
        answer = self._send(
            "POST",
            f"/api/jobs/{quote(ns)}/{job_id}/cancel",
            action=f"cancel job {job_id}",
            namespace=ns,
            job_id=job_id,
        )
        try:
            return JobInfo.from_api(
                json_answer(answer.status_code, answer.content, action="cancel"), self.endpoint
            )
        except HfJobsAPIError:
            return None  # the cancel was accepted; the answer just is not a job

    def list_jobs_hardware(self) -> list[HardwareInfo]:
        """``GET /api/jobs/hardware``: flavors and their prices."""
        return [
            HardwareInfo.from_api(item)
            for item in self._json("GET", "/api/jobs/hardware", action="list hardware")
        ]

    def wait_for_job(
        self,
        job_id: str,
        *,
        namespace: str | None = None,
        timeout: float | None = None,
        poll_interval: float = 5.0,
    ) -> JobInfo:
        """Poll until the job is terminal (``huggingface_hub.wait_for_job``); ``TimeoutError`` after ``timeout``."""
        if poll_interval <= 0:
            raise HfJobsInputError(f"poll_interval must be positive seconds; got {poll_interval!r}.")
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.inspect_job(job_id, namespace=namespace)
            if job.is_terminal:
                return job
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"job {job_id} is still {job.stage.value} after {timeout} s: {job.url}")
            time.sleep(
                poll_interval
                if deadline is None
                else max(0.0, min(poll_interval, deadline - time.monotonic()))
            )

    # ------------------------------------------------------------------------------------------------ logs
    def fetch_job_logs(
        self, job_id: str, *, namespace: str | None = None, follow: bool = False, tail: int | None = None
    ) -> Iterator[str]:
        """The job's output lines, as ``huggingface_hub.fetch_job_logs`` yields them, but each line exactly
        once even when the stream is cut: a cut is always followed by a reconnect and a deduplicated replay,
        even if the job has meanwhile finished (the official 2.4 client stops there and loses the rest)."""
        for batch in self.iter_job_log_batches(job_id, namespace=namespace, follow=follow, tail=tail):
            yield from batch.texts

    def iter_job_log_lines(
        self,
        job_id: str,
        *,
        namespace: str | None = None,
        follow: bool = True,
        tail: int | None = None,
        cursor: int = 0,
    ) -> Iterator[LogLine]:
        """Log lines with their replay position; start at ``cursor`` to resume where another reader stopped.
        See :meth:`iter_job_log_batches`."""
        for batch in self.iter_job_log_batches(
            job_id, namespace=namespace, follow=follow, tail=tail, cursor=cursor
        ):
            yield from batch

    def iter_job_log_batches(
        self,
        job_id: str,
        *,
        namespace: str | None = None,
        follow: bool = True,
        tail: int | None = None,
        cursor: int = 0,
    ) -> Iterator[LogBatch]:
        """The log as it arrives, a batch of lines per chunk (the fast way to read a busy log).

        With ``follow``, reads until the job is terminal: a stream that ends cleanly while the job is not
        terminal is re-opened after a short pause; a stream that is cut is re-opened at once (within the
        retry policy), whatever the stage. Without ``follow``, returns once the current log is drained.
        """
        import requests

        ns = self._ns(namespace)
        validate_job_id(job_id)
        if tail is not None and (not isinstance(tail, int) or isinstance(tail, bool) or tail < 0):
            raise HfJobsInputError(f"tail must be a non-negative number of lines; got {tail!r}.")
        url = f"{self.endpoint}/api/jobs/{quote(ns)}/{job_id}/logs"
        parser = LogStreamParser(cursor)
        reconnect = LogReconnect(self.retry_policy)
        use_tail = tail is not None
        read_timeout = FOLLOW_READ_TIMEOUT if follow else NO_FOLLOW_READ_TIMEOUT
        while True:
            parser.new_connection(tail=use_tail)
            params = {"tail": tail} if use_tail else None
            use_tail = False
            try:
                with self.session.get(
                    url, params=params, headers={**self._auth(), "Accept": "text/event-stream"},
                    stream=True, timeout=(10.0, read_timeout), verify=self._verify,
                ) as response:  # fmt: skip
                    if response.status_code >= 400:
                        error = error_for_response(
                            response.status_code, _read_body(response, body_limit(response.status_code)),
                            response.headers, action=f"read the logs of job {job_id}", namespace=ns,
                            job_id=job_id,
                        )  # fmt: skip
                        time.sleep(reconnect.after_http_error(error))
                        continue
                    replay_end = _replay_end(response.headers.get("Date")) if not follow else None
                    for chunk in response.iter_content(chunk_size=None):
                        batch = parser.feed(chunk)
                        if not batch:
                            continue
                        reconnect.progressed()
                        if replay_end:  # no-follow: stop at the first line logged after the replay
                            late = _first_after(batch.timestamps, replay_end)
                            if late is not None:
                                if late:
                                    yield LogBatch(
                                        batch.indexes[:late], batch.texts[:late], batch.timestamps[:late]
                                    )
                                return
                        yield batch
            except (
                requests.ConnectionError, requests.exceptions.ChunkedEncodingError, requests.exceptions.ReadTimeout
            ) as exc:  # fmt: skip
                _raise_if_tls(exc, f"read the logs of job {job_id}", self.endpoint)
                if _is_read_timeout(exc):
                    if not follow:
                        return  # the replay is drained; the stream only idles now
                    # No byte, not even a keep-alive, for minutes: the connection is dead. Re-open it.
                    self.log.info("Log stream of job %s went silent; reconnecting.", job_id)
                    continue
                delay = reconnect.after_cut(job_id, type(exc).__name__)
                self.log.info("Log stream of job %s was cut; reconnecting in %.1fs.", job_id, delay)
                time.sleep(delay)
                continue
            if not follow or self.inspect_job(job_id, namespace=ns).is_terminal:
                return
            time.sleep(reconnect.after_clean_end())

    # ------------------------------------------------------------------------------- connection UI (2.11)
    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Connection form for Airflow 2.11 (3.x reads ``ui-field-behaviour`` from provider info)."""
        return {
            "hidden_fields": ["schema", "port", "login", "extra"],
            "relabeling": {"host": "Hub endpoint", "password": "HF token"},
            "placeholders": {"host": "https://huggingface.co", "password": "hf_..."},
        }

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """Extra ``namespace`` and ``ca_bundle`` fields for the 2.11 form (3.x reads ``conn-fields``)."""
        from flask_appbuilder.fieldwidgets import BS3TextFieldWidget
        from flask_babel import lazy_gettext
        from wtforms import StringField

        return {
            "namespace": StringField(lazy_gettext("Namespace"), widget=BS3TextFieldWidget()),
            "ca_bundle": StringField(lazy_gettext("CA bundle (path)"), widget=BS3TextFieldWidget()),
        }


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
    Kept only briefly, so an edited connection is used by the next task within seconds."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._entries: dict[str, tuple[float, HfJobsCredentials]] = {}

    def get(self, conn_id: str) -> HfJobsCredentials | None:
        entry = self._entries.get(conn_id)
        if entry is None or time.monotonic() - entry[0] > self.seconds:
            return None
        return entry[1]

    def put(self, conn_id: str, credentials: HfJobsCredentials) -> None:
        self._entries[conn_id] = (time.monotonic(), credentials)

    def clear(self) -> None:
        self._entries.clear()


_recent_credentials = _RecentCredentials(seconds=5.0)


class HfJobsAsyncHook(_HfJobsHookBase):
    """The async twin of :class:`HfJobsHook` for triggers: ``httpx.AsyncClient``, no blocking call.

    The connection is read with the async connection helper (a sync ``get_connection`` inside the
    triggerer's event loop blocks it or fails). Use it as an async context manager so that one client,
    and its connection pool, serves the whole trigger.
    """

    hook_name = "Hugging Face Jobs (async)"
    _credentials: HfJobsCredentials | None = None
    _client: httpx.AsyncClient | None = None
    #: The terminal job a followed log stream ended on (saves the caller asking for it again).
    last_terminal_job: JobInfo | None = None
    _kept: KeptConnection | None = None

    async def get_credentials(self) -> HfJobsCredentials:
        if self._credentials is None:
            self._credentials = _recent_credentials.get(self.hf_conn_id) or await self._look_up_credentials()
        return self._credentials

    async def _look_up_credentials(self) -> HfJobsCredentials:
        from airflow.providers.common.compat.connection import get_async_connection, get_async_extra_dejson

        try:
            conn = await get_async_connection(self.hf_conn_id)
        except AirflowNotFoundException:
            credentials = self._credentials_from(None, None)
        else:
            credentials = self._credentials_from(conn, await get_async_extra_dejson(conn))
        _recent_credentials.put(self.hf_conn_id, credentials)
        return credentials

    async def __aenter__(self) -> HfJobsAsyncHook:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._kept is not None:
            self._kept.close()
            self._kept = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _http(self) -> tuple[httpx.AsyncClient, HfJobsCredentials]:
        creds = await self.get_credentials()
        if self._client is None:
            self._client = httpx.AsyncClient(
                headers={"User-Agent": user_agent(), "Authorization": f"Bearer {creds.token}"},
                timeout=self.request_timeout,
                verify=shared_ssl_context(self._tls_verify(creds)),
            )
        return self._client, creds

    async def get_namespace(self) -> str:
        if self._namespace is None:
            creds = await self.get_credentials()
            self._namespace = creds.namespace or namespace_from_whoami(
                await self._json("GET", "/api/whoami-v2", action="check the token (whoami)")
            )
        return self._namespace

    async def _json(self, method: str, path: str, *, action: str, **kwargs: Any) -> Any:
        status, _, content = await self._call(method, path, action=action, **kwargs)
        return json_answer(status, content, action=action)

    async def _call(
        self, method: str, path: str, *, action: str, namespace: str | None = None, job_id: str | None = None
    ) -> tuple[int, Mapping[str, str], bytes]:
        """One request with the retry policy: a 2xx answer's ``(status, headers, body)``; an HTTP error
        becomes one provider exception."""
        creds = await self.get_credentials()
        url = f"{creds.endpoint}{path}"
        attempts = RetryAttempts(self.retry_policy)
        while True:
            try:
                status, headers, content = await self._send(method, url, creds)
            except httpx.TransportError as exc:
                _raise_if_tls(exc, action, creds.endpoint)
                failure: Exception = HfJobsConnectionError(
                    f"Could not {action}: {creds.endpoint} is unreachable ({type(exc).__name__})."
                )
                delay = attempts.after(failure)
            else:
                if status < 400:
                    return status, headers, content
                failure = error_for_response(
                    status, content, headers, action=action, namespace=namespace, job_id=job_id
                )
                delay = attempts.after(failure, status_code=status, headers=headers)
            self.log.warning("%s; retry %d in %.1fs", _first_sentence(failure), attempts.failures, delay)
            await asyncio.sleep(delay)

    async def _send(
        self, method: str, url: str, creds: HfJobsCredentials
    ) -> tuple[int, Mapping[str, str], bytes]:
        """One request's ``(status, headers, body)``, the body read within :func:`.jobs.body_limit`: a GET
        over the kept lean connection when it can, else (a proxy, a failed connection, any other method)
        through httpx, which raises its TransportError."""
        if method == "GET" and (answer := await self._kept_get(url, creds)) is not None:
            return answer
        client, _ = await self._http()
        stream = await _HttpxEventStream.open(client.stream(method, url))
        try:
            return stream.status_code, stream.headers, await stream.read_all()
        finally:
            await stream.aclose()

    async def inspect_job(self, job_id: str, *, namespace: str | None = None) -> JobInfo:
        ns = validate_namespace(namespace) if namespace else await self.get_namespace()
        validate_job_id(job_id)
        data = await self._json(
            "GET",
            f"/api/jobs/{quote(ns)}/{job_id}",
            action=f"inspect job {job_id}",
            namespace=ns,
            job_id=job_id,
        )
        return JobInfo.from_api(data, (await self.get_credentials()).endpoint)

    async def cancel_job(self, job_id: str, *, namespace: str | None = None) -> None:
        ns = validate_namespace(namespace) if namespace else await self.get_namespace()
        validate_job_id(job_id)
        await self._call(
            "POST",
            f"/api/jobs/{quote(ns)}/{job_id}/cancel",
            action=f"cancel job {job_id}",
            namespace=ns,
            job_id=job_id,
        )

    async def iter_job_log_lines(
        self, job_id: str, *, namespace: str | None = None, cursor: int = 0
    ) -> AsyncIterator[LogLine]:
        """Follow the job's log until it is terminal, each line once, starting after ``cursor`` events."""
        async for batch in self.iter_job_log_batches(job_id, namespace=namespace, cursor=cursor):
            for line in batch:
                yield line

    async def iter_job_log_batches(
        self, job_id: str, *, namespace: str | None = None, cursor: int = 0
    ) -> AsyncIterator[LogBatch]:
        """Follow the job's log until it is terminal, a batch of lines per chunk, each line once, starting
        after ``cursor`` events. Same rules as :meth:`HfJobsHook.iter_job_log_batches` (they share
        :class:`LogReconnect`)."""
        ns = validate_namespace(namespace) if namespace else await self.get_namespace()
        validate_job_id(job_id)
        creds = await self.get_credentials()  # the httpx client is only built if a request needs it
        url = f"{creds.endpoint}/api/jobs/{quote(ns)}/{job_id}/logs"
        parser = LogStreamParser(cursor)
        reconnect = LogReconnect(self.retry_policy)
        while True:
            parser.new_connection()
            try:
                stream = await self._open_log_stream(url, creds)
                try:
                    if stream.status_code >= 400:
                        body, headers = await stream.read_all(), stream.headers
                    else:
                        body = headers = None
                        while chunk := await stream.read():
                            batch = parser.feed(chunk)
                            if batch:
                                reconnect.progressed()
                                yield batch
                finally:
                    await stream.aclose()
                if body is not None:
                    error = error_for_response(
                        stream.status_code, body, headers, action=f"read the logs of job {job_id}", namespace=ns,
                        job_id=job_id,
                    )  # fmt: skip
                    await asyncio.sleep(reconnect.after_http_error(error))
                    continue
            except (httpx.ReadTimeout, EventStreamTimeout):
                self.log.info("Log stream of job %s went silent; reconnecting.", job_id)
                continue
            except (httpx.TransportError, EventStreamError) as exc:
                _raise_if_tls(exc, f"read the logs of job {job_id}", creds.endpoint)
                delay = reconnect.after_cut(job_id, type(exc).__name__)
                self.log.info("Log stream of job %s was cut; reconnecting in %.1fs.", job_id, delay)
                await asyncio.sleep(delay)
                continue
            job = await self.inspect_job(job_id, namespace=ns)
            if job.is_terminal:
                self.last_terminal_job = job
                return
            await asyncio.sleep(reconnect.after_clean_end())

    def _kept_connection(self, creds: HfJobsCredentials) -> KeptConnection:
        if self._kept is None:
            self._kept = KeptConnection(shared_ssl_context(self._tls_verify(creds)), self.request_timeout)
        return self._kept

    async def _kept_get(
        self, url: str, creds: HfJobsCredentials
    ) -> tuple[int, Mapping[str, str], bytes] | None:
        """A GET over the hook's kept-alive lean connection (stage polls: a fraction of httpx's CPU each;
        the check after a log stream reuses its connection); ``None``: a proxy applies or the connection
        failed, and httpx asks instead."""
        headers = {
            "User-Agent": user_agent(),
            "Authorization": f"Bearer {creds.token}",
            "Accept": "application/json",
        }
        return await self._kept_connection(creds).get(url, headers)

    async def _open_log_stream(self, url: str, creds: HfJobsCredentials) -> EventStream | _HttpxEventStream:
        """One log connection: the lean transport of :mod:`.event_stream` over the hook's kept connection
        (a fraction of httpx's CPU per chunk), or httpx when a proxy applies. Read it, then ``aclose`` it."""
        headers = {"User-Agent": user_agent(), "Authorization": f"Bearer {creds.token}"}
        stream = await self._kept_connection(creds).open_stream(url, headers, FOLLOW_READ_TIMEOUT)
        if stream is not None:
            return stream
        client, _ = await self._http()
        timeout = httpx.Timeout(self.request_timeout, read=FOLLOW_READ_TIMEOUT)
        return await _HttpxEventStream.open(
            client.stream("GET", url, headers={"Accept": "text/event-stream"}, timeout=timeout)
        )


class _HttpxEventStream:
    """An httpx streamed response with :class:`.EventStream`'s interface (used when a proxy applies)."""

    def __init__(
        self, opened: contextlib.AbstractAsyncContextManager[httpx.Response], response: httpx.Response
    ):
        self._opened = opened
        self.status_code = response.status_code
        self.headers = response.headers
        self._chunks = response.aiter_bytes()

    @classmethod
    async def open(cls, opened: contextlib.AbstractAsyncContextManager[httpx.Response]) -> _HttpxEventStream:
        return cls(opened, await opened.__aenter__())

    async def read(self) -> bytes:
        """The next body bytes; ``b""`` at the end."""
        try:
            return await anext(self._chunks)
        except StopAsyncIteration:
            return b""

    async def read_all(self, limit: int | None = None) -> bytes:
        """As :meth:`.EventStream.read_all`: cut after ``limit + 1`` bytes (by default the status's
        :func:`.jobs.body_limit`)."""
        return await read_capped(self.read, body_limit(self.status_code) if limit is None else limit)

    async def aclose(self) -> None:
        await self._opened.__aexit__(None, None, None)


class _Answer(NamedTuple):
    """A sync answer, its body read within :func:`.jobs.body_limit`."""

    status_code: int
    headers: Mapping[str, str]
    content: bytes


def _read_body(response: requests.Response, limit: int) -> bytes:
    """At most ``limit + 1`` bytes of a ``stream=True`` response's (decoded) body, then the response is
    closed: a longer body is never read whole. A body read to its end leaves the connection pooled."""
    parts, size = [], 0
    with response:
        for chunk in response.iter_content(chunk_size=64 << 10):
            parts.append(chunk)
            size += len(chunk)
            if size > limit:
                break
    body = b"".join(parts)
    return body if size <= limit else body[: limit + 1]


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


def _is_read_timeout(exc: requests.RequestException) -> bool:
    """A read timeout, however ``requests`` reports it: mid-body it arrives as a ``ConnectionError``
    wrapping urllib3's ``ReadTimeoutError``, not as ``requests.ReadTimeout``."""
    import requests
    import urllib3

    return isinstance(exc, requests.exceptions.ReadTimeout) or any(
        isinstance(arg, urllib3.exceptions.ReadTimeoutError) for arg in exc.args
    )


def _replay_end(date_header: str | None) -> Any:
    """No-follow cutoff, as the official client: events later than the response ``Date`` + 1 s are new."""
    if not date_header:
        return None
    try:
        moment = parsedate_to_datetime(date_header)
    except (TypeError, ValueError):
        return None
    if moment is None or moment.tzinfo is None:
        return None
    return moment + timedelta(seconds=1)


def _after(timestamp: str | None, moment: Any) -> bool:
    if not timestamp:
        return False
    try:
        parsed = parse_timestamp(timestamp)
    except ValueError:
        return False
    return parsed is not None and parsed > moment


def _first_after(timestamps: Sequence[str | None], moment: Any) -> int | None:
    """Position of the first timestamp later than ``moment``, or ``None``."""
    return next((i for i, stamp in enumerate(timestamps) if _after(stamp, moment)), None)
