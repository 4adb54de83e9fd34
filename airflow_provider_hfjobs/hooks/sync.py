"""``HfJobsHook``: the HF Jobs REST API over ``requests``, for operators, sensors and DAG code.

Transport only: it reads the Airflow connection once, resolves the namespace once, sends the requests
that :mod:`airflow_provider_hfjobs.jobs` describes (one :class:`~.jobs.ApiCall` per route) with one retry
policy, and hands bytes back to it and to :mod:`airflow_provider_hfjobs.sse`, which decide everything
about the API. Method names and arguments are ``huggingface_hub``'s (``run_job``, ``inspect_job``,
``fetch_job_logs``, ``fetch_job_metrics``, ``rerun_job`` ...). The log and metrics streams are the
methods of :mod:`.sync_streams`, a mixin of the hook.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import timedelta
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar, overload

from airflow.providers.common.compat.sdk import AirflowNotFoundException, mask_secret

from airflow_provider_hfjobs.deadlines import (
    REQUEST_DEADLINE,
    STAGE_CHECK_INTERVAL,
    check_seconds,
    too_slow,
)
from airflow_provider_hfjobs.exceptions import (
    HfJobsAPIError,
    HfJobsBadRequestError,
    HfJobsConnectionError,
    HfJobsError,
)
from airflow_provider_hfjobs.hooks.credentials import (
    HfJobsCredentials,
    _connection_refused,
    _first_sentence,
    _raise_if_tls,
    user_agent,
)
from airflow_provider_hfjobs.hooks.sync_streams import (
    NO_FOLLOW_READ_TIMEOUT,
    STREAM_CONNECT_TIMEOUT,
    _SyncStreams,
)
from airflow_provider_hfjobs.hooks.sync_transport import (
    Deadline,
    TooSlow,
    deadline_adapter,
    not_sent,
    read_body,
)
from airflow_provider_hfjobs.jobs import (
    CREATE_NOT_APPLIED_STATUS,
    DEFAULT_UV_IMAGE,
    SUBMISSION_LABEL,
    ApiCall,
    HardwareInfo,
    JobInfo,
    JobStage,
    JobWait,
    RetryAttempts,
    RetryPolicy,
    Route,
    ScheduledJobInfo,
    Volume,
    body_limit,
    build_job_spec,
    build_scheduled_job_spec,
    build_scheduled_uv_job_spec,
    cancel_job_call,
    check_http_credentials,
    check_uv_env,
    classify_uv_script,
    create_job_call,
    create_scheduled_job_call,
    default_uv_job_name,
    delete_scheduled_job_call,
    error_for_response,
    hardware_call,
    inspect_job_call,
    inspect_scheduled_job_call,
    is_error_status,
    job_route,
    json_answer,
    list_jobs_params,
    list_scheduled_jobs_call,
    namespace_from_whoami,
    next_page_url,
    outcome_unknown,
    rerun_job_call,
    resume_scheduled_job_call,
    suspend_scheduled_job_call,
    trigger_error,
    trigger_scheduled_job_call,
    update_job_expose_call,
    update_job_labels_call,
    update_scheduled_job_labels_call,
    update_scheduled_job_schedule_call,
    uv_job_command,
    validate_namespace,
    whoami_call,
)

if TYPE_CHECKING:
    import requests  # imported where used: it costs a DAG file parse 35 ms, and only the sync hook needs it

    from airflow_provider_hfjobs.orphans import OrphanJob, TaskStatesReader

#: The stream timeouts live with the streams (:mod:`.sync_streams`) and are importable from here too.
__all__ = ["NO_FOLLOW_READ_TIMEOUT", "STREAM_CONNECT_TIMEOUT", "HfJobsHook"]

R = TypeVar("R", bound=Route)
T = TypeVar("T")


class HfJobsHook(_SyncStreams):
    """Talk to Hugging Face Jobs.

    :param hf_conn_id: an ``hf_jobs`` connection (host = Hub endpoint, empty for huggingface.co; password =
        token; extras ``namespace``, ``ca_bundle`` and ``verify``, see :func:`credentials_from_connection`).
        If the default connection does not exist, ``HF_TOKEN`` and ``HF_ENDPOINT`` are used, as
        ``huggingface_hub`` does. Certificates are verified as :func:`tls_verify_setting` says.
    :param namespace: user or organization owning the jobs; overrides the connection's. When neither says,
        it is resolved once through ``whoami`` (a heavily rate-limited endpoint) and cached.
    :param retry_policy: when and how long to retry connection errors, 408, 429 and 5xx.
    :param request_timeout: seconds to wait for a (non-streaming) answer's next bytes (one read).

    Two attributes bound the waits a read timeout cannot (see :mod:`airflow_provider_hfjobs.deadlines`):
    :attr:`request_deadline` and :attr:`stage_check_interval`.
    """

    #: Seconds one non-streaming request may take in all, from sending it to its body's last byte: an
    #: answer trickled a byte at a time fails then, as a retried transport error.
    request_deadline: float = REQUEST_DEADLINE
    #: Seconds a followed log or metrics stream may bring no new line before the job's stage is checked:
    #: a stream the server keeps open after the job ended is left within about this bound.
    stage_check_interval: float = STAGE_CHECK_INTERVAL

    # ---------------------------------------------------------------------------------------- connection
    @cached_property
    def credentials(self) -> HfJobsCredentials:
        """Read once: the connection (or the environment), with the token registered with the masker."""
        try:
            conn = self.get_connection(self.hf_conn_id)
        except AirflowNotFoundException:
            creds = self._credentials_from(None, None)
        else:
            creds = self._credentials_from(conn, conn.extra_dejson)
        check_http_credentials(creds.endpoint, creds.token)
        return creds

    @property
    def endpoint(self) -> str:
        return self.credentials.endpoint

    @cached_property
    def session(self) -> requests.Session:
        import requests

        session = requests.Session()
        session.headers.update({"User-Agent": user_agent(), "Accept": "application/json"})
        # Its connections let a request's deadline stop their reads (see sync_transport.Deadline).
        adapter = deadline_adapter()()
        session.mount("https://", adapter)
        session.mount("http://", adapter)
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

    def _resolved(self, route: R) -> R:
        """``route`` in the hook's namespace if it names none (the route was checked before: bad input
        never costs the ``whoami`` that resolving may take)."""
        return route.in_namespace(self.namespace) if route.needs_namespace else route

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
        idempotent: bool = True,
    ) -> _Answer:
        """One request with the retry policy, its body read within :func:`.jobs.body_limit`; an HTTP
        error becomes one provider exception. Not ``idempotent``: retried only when it certainly was not
        done (see :class:`.jobs.ApiCall`)."""
        import requests

        target = url or f"{self.endpoint}{path}"
        attempts = RetryAttempts(self.retry_policy if retry else RetryPolicy(max_retries=0))
        while True:
            try:
                response, content = self._exchange(
                    method, target, listing=listing, params=params, json=json_body
                )
            except TooSlow:
                failure: HfJobsError = too_slow(action, self.request_deadline)
                if not idempotent:
                    raise outcome_unknown(failure) from None
                delay = attempts.after(failure)
            except requests.RequestException as exc:
                _raise_if_tls(exc, action, self.endpoint)
                malformed = isinstance(
                    exc, (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError)
                )
                failure = HfJobsConnectionError(
                    f"Could not {action}: {self.endpoint} "
                    f"{'sent a malformed answer' if malformed else 'is unreachable'} ({type(exc).__name__})."
                )
                if not idempotent and not not_sent(exc):
                    raise outcome_unknown(failure) from None
                delay = attempts.after(failure)
            else:
                status = response.status_code
                if not is_error_status(status):
                    return _Answer(status, response.headers, content)
                retryable = idempotent or status in CREATE_NOT_APPLIED_STATUS
                failure = error_for_response(
                    status, content, response.headers, action=action, namespace=namespace, job_id=job_id,
                    retried=retryable,
                )  # fmt: skip
                if not retryable:
                    raise outcome_unknown(failure) if status >= 500 else failure
                delay = attempts.after(failure, status_code=status, headers=response.headers)
            self.log.warning("%s; retry %d in %.1fs", _first_sentence(failure), attempts.failures, delay)
            time.sleep(delay)

    def _exchange(
        self, method: str, url: str, *, listing: bool = False, **kwargs: Any
    ) -> tuple[requests.Response, bytes]:
        """One request and its body (read within :func:`.jobs.body_limit`), all within
        :attr:`request_deadline`: past it :class:`TooSlow`, whatever the transport said."""
        deadline = check_seconds(self.request_deadline, "request_deadline")
        with Deadline(deadline) as watch:
            try:
                response = self.session.request(
                    method, url, headers=self._auth(), stream=True, verify=self._verify, allow_redirects=False,
                    timeout=(min(self.request_timeout, deadline), self.request_timeout), **kwargs,
                )  # fmt: skip
                watch.attach_response(response)
                content = read_body(response, body_limit(response.status_code, listing=listing))
            except Exception:
                if watch.expired:
                    raise TooSlow from None
                raise
        if watch.expired:  # the shut socket may have looked like the end of a body without a length
            raise TooSlow
        return response, content

    def _request(self, call: ApiCall[T]) -> T:
        """Send one described request and parse its answer (the route says how)."""
        call = self._resolved(call)
        answer = self._send(
            call.method, call.path, action=call.action, namespace=call.namespace, job_id=call.job_id,
            json_body=call.body, idempotent=call.idempotent,
        )  # fmt: skip
        return call.result(answer.status_code, answer.content, self.endpoint)

    # ------------------------------------------------------------------------------------------------ API
    def whoami(self) -> dict[str, Any]:
        """``GET /api/whoami-v2``: who the token belongs to."""
        return self._request(whoami_call())

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
        attempts: int | None = None,
        name: str | None = None,
        labels: Mapping[str, str] | None = None,
        volumes: Sequence[Volume | Mapping[str, Any]] | None = None,
        expose: Sequence[int] | None = None,
        expose_public: Sequence[int] | None = None,
        ssh: bool = False,
        network_group: str | None = None,
        network_aliases: Sequence[str] | None = None,
        resource_group_id: str | None = None,
        namespace: str | None = None,
    ) -> JobInfo:
        """Create a job (``POST /api/jobs/{namespace}``), with every argument of ``huggingface_hub``'s
        ``run_job``; ``volumes`` may be :class:`~.jobs.Volume` objects or plain dicts (camelCase or
        snake_case). Input is validated before anything is sent."""
        spec = build_job_spec(
            image=image, command=command, env=env, secrets=secrets, flavor=flavor, timeout=timeout,
            attempts=attempts, name=name, labels=labels, volumes=volumes, expose=expose, expose_public=expose_public,
            ssh=ssh, network_group=network_group, network_aliases=network_aliases,
            resource_group_id=resource_group_id,
        )  # fmt: skip
        for value in (secrets or {}).values():
            mask_secret(value)
        return self._create_job(self._resolved(create_job_call(spec, namespace)))

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
        attempts: int | None = None,
        name: str | None = None,
        labels: Mapping[str, str] | None = None,
        volumes: Sequence[Volume | Mapping[str, Any]] | None = None,
        expose: Sequence[int] | None = None,
        expose_public: Sequence[int] | None = None,
        ssh: bool = False,
        network_group: str | None = None,
        network_aliases: Sequence[str] | None = None,
        resource_group_id: str | None = None,
        namespace: str | None = None,
    ) -> JobInfo:
        """Run a UV script: a local ``.py`` path, an https URL, inline Python source, or a command such as
        ``lighteval`` (``uv run lighteval <script_args>``), told apart as ``huggingface_hub`` does.

        A URL or a command is run by ``uv run`` directly. A local file or inline source travels inside the
        job spec (base64 in an environment variable, decoded into the job's working directory): nothing
        is uploaded to a Hub repo or bucket, so no mount path is reserved for it. The other arguments are
        :meth:`run_job`'s.
        """
        kind = classify_uv_script(script, is_file=_is_file)
        command, extra_env = uv_job_command(
            script,
            kind,
            script_args=script_args,
            dependencies=dependencies,
            python=python,
            read_file=_read_file,
        )
        check_uv_env(env, kind)
        if name is None and not (labels and "name" in labels):
            name = default_uv_job_name(script, list(script_args or []))
        return self.run_job(
            image=image or DEFAULT_UV_IMAGE, command=command, env={**(env or {}), **extra_env}, secrets=secrets,
            flavor=flavor, timeout=timeout, attempts=attempts, name=name, labels=labels, volumes=volumes,
            expose=expose, expose_public=expose_public, ssh=ssh, network_group=network_group,
            network_aliases=network_aliases, resource_group_id=resource_group_id, namespace=namespace,
        )  # fmt: skip

    def _create_job(self, call: ApiCall[JobInfo]) -> JobInfo:
        """Send a create at most once in effect.

        A create whose outcome is unknown (a 5xx, or a connection lost after sending) may have started the
        job, so it is never blindly re-sent: first look the job up by its submission label, and re-send
        only if it is not there. A refused connection, 408 or 429 means nothing was created.
        """
        import requests

        spec, namespace, action = call.body, call.namespace, call.action
        labels = spec.setdefault("labels", {})
        submission = labels.setdefault(SUBMISSION_LABEL, uuid.uuid4().hex)
        url = f"{self.endpoint}{call.path}"
        attempts = RetryAttempts(self.retry_policy)
        while True:
            status: int | None = None
            headers: Mapping[str, str] | None = None
            failure: HfJobsError
            try:
                response, content = self._exchange("POST", url, json=spec)
            except TooSlow:  # sent, and maybe done: look for the job before sending again
                applied, failure = True, too_slow(action, self.request_deadline)
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
                if not is_error_status(response.status_code):
                    return call.result(response.status_code, content, self.endpoint)
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
        return self._request(inspect_job_call(job_id, namespace))

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
        url: str | None = f"{self.endpoint}{job_route(namespace=ns)}"
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
        return self._request(cancel_job_call(job_id, namespace))

    def rerun_job(self, job_id: str, *, namespace: str | None = None) -> JobInfo:
        """A new job with this job's spec, retry and resource settings included (``POST .../duplicate``).

        Sent at most once: each duplicate that reaches the server starts a job, so an answer lost to a 5xx
        or a dropped connection is an error that says the job may have started, never a second send."""
        return self._request(rerun_job_call(job_id, namespace))

    def update_job_labels(
        self, job_id: str, *, labels: Mapping[str, str], namespace: str | None = None
    ) -> JobInfo:
        """Replace all the job's labels (``PUT .../labels``), checked as on create. That includes the
        ``airflow-ti`` and ``hfjobs-submission`` labels this provider sets: keep them if a task retry is to
        find the job again."""
        return self._request(update_job_labels_call(job_id, labels, namespace))

    def update_job_expose(
        self,
        job_id: str,
        *,
        expose: Sequence[int] | None = None,
        expose_public: Sequence[int] | None = None,
        namespace: str | None = None,
    ) -> JobInfo:
        """Replace a running job's exposed ports (``PUT .../expose``): the two lists are the whole new
        configuration (neither closes every port); a public port need not be in ``expose``."""
        return self._request(update_job_expose_call(job_id, expose, expose_public, namespace))

    def list_jobs_hardware(self) -> list[HardwareInfo]:
        """``GET /api/jobs/hardware``: flavors and their prices."""
        return self._request(hardware_call())

    # -------------------------------------------------------------------------------------- scheduled jobs
    def create_scheduled_job(
        self,
        *,
        image: str,
        command: list[str],
        schedule: str,
        suspend: bool | None = None,
        concurrency: bool | None = None,
        env: Mapping[str, str] | None = None,
        secrets: Mapping[str, str] | None = None,
        flavor: str | None = None,
        timeout: int | float | str | None = None,
        attempts: int | None = None,
        name: str | None = None,
        labels: Mapping[str, str] | None = None,
        volumes: Sequence[Volume | Mapping[str, Any]] | None = None,
        expose: Sequence[int] | None = None,
        expose_public: Sequence[int] | None = None,
        resource_group_id: str | None = None,
        namespace: str | None = None,
    ) -> ScheduledJobInfo:
        """Create a scheduled job (``POST /api/scheduled-jobs/{namespace}``) with every argument of
        ``huggingface_hub``'s ``create_scheduled_job`` and the very same body. ``schedule`` is a 5-field
        cron expression or one of ``@hourly``, ``@daily``, ``@weekly``, ``@monthly``, ``@yearly``,
        ``@annually``; it and everything else is validated before any request.

        Sent at most once: each create that reaches the server makes a schedule, so an answer lost to a
        5xx or a dropped connection is an error saying it may exist, never a second send (a refused
        connection, 408 or 429 is retried)."""
        body = build_scheduled_job_spec(
            image=image, command=command, schedule=schedule, suspend=suspend, concurrency=concurrency, env=env,
            secrets=secrets, flavor=flavor, timeout=timeout, attempts=attempts, name=name, labels=labels,
            volumes=volumes, expose=expose, expose_public=expose_public, resource_group_id=resource_group_id,
        )  # fmt: skip
        for value in (secrets or {}).values():
            mask_secret(value)
        return self._request(create_scheduled_job_call(body, namespace))

    def create_scheduled_uv_job(
        self,
        script: str,
        *,
        script_args: list[str] | None = None,
        schedule: str,
        suspend: bool | None = None,
        concurrency: bool | None = None,
        dependencies: list[str] | None = None,
        python: str | None = None,
        image: str | None = None,
        env: Mapping[str, str] | None = None,
        secrets: Mapping[str, str] | None = None,
        flavor: str | None = None,
        timeout: int | float | str | None = None,
        attempts: int | None = None,
        name: str | None = None,
        labels: Mapping[str, str] | None = None,
        volumes: Sequence[Volume | Mapping[str, Any]] | None = None,
        expose: Sequence[int] | None = None,
        expose_public: Sequence[int] | None = None,
        resource_group_id: str | None = None,
        namespace: str | None = None,
    ) -> ScheduledJobInfo:
        """A scheduled UV script job, as ``huggingface_hub``'s ``create_scheduled_uv_job``: the script is
        what :meth:`run_uv_job` takes (a local file or inline source travels inside the job spec); the
        other arguments are :meth:`create_scheduled_job`'s."""
        body = build_scheduled_uv_job_spec(
            script, schedule=schedule, script_args=script_args, suspend=suspend, concurrency=concurrency,
            dependencies=dependencies, python=python, image=image, env=env, secrets=secrets, flavor=flavor,
            timeout=timeout, attempts=attempts, name=name, labels=labels, volumes=volumes, expose=expose,
            expose_public=expose_public, resource_group_id=resource_group_id, is_file=_is_file,
            read_file=_read_file,
        )  # fmt: skip
        for value in (secrets or {}).values():
            mask_secret(value)
        return self._request(create_scheduled_job_call(body, namespace))

    def list_scheduled_jobs(
        self, *, labels: Mapping[str, str] | None = None, namespace: str | None = None
    ) -> list[ScheduledJobInfo]:
        """``GET /api/scheduled-jobs/{namespace}``: those with all of ``labels``. As ``huggingface_hub``,
        the first label is filtered on by the server (``?label=k=v``), the others here."""
        return self._request(list_scheduled_jobs_call(labels, namespace))

    def inspect_scheduled_job(
        self, scheduled_job_id: str, *, namespace: str | None = None
    ) -> ScheduledJobInfo:
        """``GET /api/scheduled-jobs/{namespace}/{id}``: its spec, schedule, latest run and next run time."""
        return self._request(inspect_scheduled_job_call(scheduled_job_id, namespace))

    def delete_scheduled_job(self, scheduled_job_id: str, *, namespace: str | None = None) -> None:
        """``DELETE /api/scheduled-jobs/{namespace}/{id}``: no more runs (runs already started go on)."""
        self._request(delete_scheduled_job_call(scheduled_job_id, namespace))

    def suspend_scheduled_job(self, scheduled_job_id: str, *, namespace: str | None = None) -> None:
        """``POST .../suspend``: pause the schedule until :meth:`resume_scheduled_job`."""
        self._request(suspend_scheduled_job_call(scheduled_job_id, namespace))

    def resume_scheduled_job(self, scheduled_job_id: str, *, namespace: str | None = None) -> None:
        """``POST .../resume``: the schedule runs again."""
        self._request(resume_scheduled_job_call(scheduled_job_id, namespace))

    def update_scheduled_job_schedule(
        self, scheduled_job_id: str, *, schedule: str, namespace: str | None = None
    ) -> ScheduledJobInfo:
        """``POST .../schedule``: change when it runs (spec, labels and suspension are kept); the schedule
        is checked first."""
        return self._request(update_scheduled_job_schedule_call(scheduled_job_id, schedule, namespace))

    def trigger_scheduled_job(self, scheduled_job_id: str, *, namespace: str | None = None) -> JobInfo:
        """``POST .../run``: one run now (the schedule and its next run are unchanged); the job of that run.

        Sent at most once, as :meth:`rerun_job`. A run still active while the scheduled job does not allow
        concurrent runs is :class:`~.exceptions.HfJobsConcurrencyError` (HTTP 409): nothing was started."""
        try:
            return self._request(trigger_scheduled_job_call(scheduled_job_id, namespace))
        except HfJobsError as exc:
            if (clear := trigger_error(exc, scheduled_job_id)) is exc:
                raise
            raise clear from None

    def update_scheduled_job_labels(
        self, scheduled_job_id: str, *, labels: Mapping[str, str], namespace: str | None = None
    ) -> ScheduledJobInfo:
        """``PUT .../labels``: replace all its labels (checked as on create)."""
        return self._request(update_scheduled_job_labels_call(scheduled_job_id, labels, namespace))

    @overload
    def wait_for_job(
        self,
        job_id: str,
        *,
        namespace: str | None = None,
        timeout: float | None = None,
        poll_interval: float = 5.0,
        stages: Iterable[str | JobStage] | None = None,
    ) -> JobInfo: ...

    @overload
    def wait_for_job(
        self,
        job_id: list[str],
        *,
        namespace: str | None = None,
        timeout: float | None = None,
        poll_interval: float = 5.0,
        stages: Iterable[str | JobStage] | None = None,
    ) -> list[JobInfo]: ...

    def wait_for_job(
        self,
        job_id: str | list[str],
        *,
        namespace: str | None = None,
        timeout: float | None = None,
        poll_interval: float = 5.0,
        stages: Iterable[str | JobStage] | None = None,
    ) -> JobInfo | list[JobInfo]:
        """Poll until each job reaches one of ``stages`` or a terminal stage, as ``huggingface_hub``'s
        ``wait_for_job`` (one id: a job; a list: a list, same order); a failed job does not raise.
        ``TimeoutError`` after ``timeout`` seconds for all of them. Polls every 5 s by default, gentler on
        the API than the official 1 s."""
        wait = JobWait(
            job_id, timeout=timeout, poll_interval=poll_interval, stages=stages, now=time.monotonic()
        )
        ns = self._ns(namespace) if wait.job_ids else None
        jobs = []
        for one in wait.job_ids:
            while not wait.reached(job := self.inspect_job(one, namespace=ns)):
                time.sleep(wait.pause(job, time.monotonic()))
            jobs.append(job)
        return wait.result(jobs)

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
        """The ``conn-fields`` extras for the 2.11 form (3.x reads ``conn-fields`` itself)."""
        from flask_appbuilder.fieldwidgets import BS3TextFieldWidget
        from flask_babel import lazy_gettext
        from wtforms import BooleanField, StringField

        return {
            "namespace": StringField(lazy_gettext("Namespace"), widget=BS3TextFieldWidget()),
            "ca_bundle": StringField(lazy_gettext("CA bundle (path)"), widget=BS3TextFieldWidget()),
            "verify": BooleanField(lazy_gettext("Verify TLS certificates"), default=True),
            "allow_insecure_http": BooleanField(
                lazy_gettext("Allow plain HTTP to another machine"), default=False
            ),
        }

    # -------------------------------------------------------------------------------------------- orphans
    def list_orphan_jobs(
        self,
        task_states: TaskStatesReader | None = None,
        *,
        namespace: str | None = None,
        labels: Mapping[str, str] | None = None,
        min_age: timedelta | float | str = timedelta(minutes=10),
    ) -> list[OrphanJob]:
        """The live jobs this provider's operators started whose task instance no longer watches them (it
        finished, failed, was cleared or deleted), older than ``min_age``: billed with nobody watching.
        ``task_states`` is a :data:`~airflow_provider_hfjobs.orphans.TaskStatesReader`
        (default: this Airflow's). See :mod:`airflow_provider_hfjobs.orphans`."""
        from airflow_provider_hfjobs.orphans import scan_orphan_jobs

        scan = scan_orphan_jobs(self, task_states, namespace=namespace, labels=labels, min_age=min_age)
        return scan.orphans


class _Answer(NamedTuple):
    """A sync answer, its body read within :func:`.jobs.body_limit`."""

    status_code: int
    headers: Mapping[str, str]
    content: bytes


def _is_file(script: str) -> bool:
    """The look at the disk that tells a uv script file from a command (a name too long is no file)."""
    try:
        return Path(script).expanduser().is_file()
    except (OSError, ValueError):
        return False


def _read_file(script: str) -> bytes:
    return Path(script).expanduser().read_bytes()
