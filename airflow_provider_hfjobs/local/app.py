"""The local Jobs server's HTTP API: the routes of the HF Jobs REST API that the official clients use.

Routes only; job records live in :mod:`.store`, processes in :mod:`.runner`, and the API's own rules
(stages, labels, timestamps) in :mod:`airflow_provider_hfjobs.jobs`. Every response carries exactly one
``Date`` header and an ``X-Request-Id``; errors are ``{"error": "..."}``.

A job is a command run as the developer, so the app answers only requests addressed to a loopback name
(:class:`HostGuard`: a web page cannot reach it through DNS rebinding) and refuses state changes from
other sites' pages; request bodies are capped (``MAX_BODY_BYTES``).

The job pages a browser opens (``JobInfo.url``: ``/jobs/{namespace}/{id}``) are :mod:`.pages`, behind the
same guard; they follow a job's log with the API's own stream (:func:`log_events`).

The middleware and request helpers are :mod:`.middleware`, the log stream :mod:`.streams`; their public
names stay importable from here.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
import json
import logging
import secrets
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from airflow_provider_hfjobs.exceptions import HfJobsInputError
from airflow_provider_hfjobs.jobs import JobStage, validate_schedule
from airflow_provider_hfjobs.local.faults import Fault, FaultInjector
from airflow_provider_hfjobs.local.hardware import HARDWARE
from airflow_provider_hfjobs.local.limits import RequestCounter
from airflow_provider_hfjobs.local.middleware import (
    CUT_SCOPE_KEY,
    DRAIN_BYTES,
    MAX_BODY_BYTES,
    SAFE_METHODS,
    SCHEDULED_ACTIONS,
    FaultMiddleware,
    HostGuard,
    InjectedCut,
    ProtocolHeaders,
    error,
    host_of,
    is_control_or_page,
    is_loopback,
    read_body,
    request_kind,
    scheduled_request_kind,
    too_large,
    too_large_message,
)
from airflow_provider_hfjobs.local.pages import JobPages, ScheduledActions
from airflow_provider_hfjobs.local.runner import ProcessRunner
from airflow_provider_hfjobs.local.scheduled_store import ScheduledJobRecord, ScheduledJobStore
from airflow_provider_hfjobs.local.scheduler import Scheduler
from airflow_provider_hfjobs.local.simulated import SimulatedRunner
from airflow_provider_hfjobs.local.spec import (
    SpecError,
    check_expose,
    check_labels,
    refuse_unknown,
    validate_create,
)
from airflow_provider_hfjobs.local.store import JobRecord, JobStore, owner_id
from airflow_provider_hfjobs.local.streams import log_event, log_events
from airflow_provider_hfjobs.local.volumes import Volumes

__all__ = [
    "CUT_SCOPE_KEY", "DRAIN_BYTES", "MAX_BODY_BYTES", "METRICS_INTERVAL", "PAGE_SIZE", "SAFE_METHODS",
    "SCHEDULED_ACTIONS", "FaultMiddleware", "HostGuard", "InjectedCut", "ProtocolHeaders", "create_app",
    "error", "host_of", "is_control_or_page", "is_loopback", "log_event", "log_events", "read_body",
    "request_kind", "scheduled_request_kind", "too_large", "too_large_message",
]  # fmt: skip

RestartCallback = Callable[[float], None]
logger = logging.getLogger(__name__)

PAGE_SIZE = 50
#: Seconds between two metric events (the Hub sends one a second).
METRICS_INTERVAL = 1.0
#: Fields of a scheduled-job create body (the reference's §8).
SCHEDULED_FIELDS = ("jobSpec", "schedule", "concurrency", "suspend")
SCHEDULED_JOB = "/api/scheduled-jobs/{namespace}/{scheduled_job_id}"


#: Fields of a bucket create body (``HfApi.create_bucket``).
BUCKET_FIELDS = ("visibility", "resourceGroupId", "region")
XET_NOT_SUPPORTED = (
    "Uploading files to a bucket (Xet) is not supported by the local Jobs server, so `hf jobs uv run` "
    "of a local script (or a URL, which the CLI downloads and uploads) and `-v ./local_dir:/path` "
    "cannot ship files here. Instead: run the script from a URL with HfApi.run_uv_job (it runs the URL "
    "directly); use HfUvJobOperator, which inlines the script in the job; or put the file in the "
    "bucket's directory (buckets/<namespace>/<name>/ under the server's state directory) and mount the "
    "bucket with -v hf://buckets/<namespace>/<name>:/data."
)


def check_bucket_settings(body: dict[str, Any]) -> dict[str, Any]:
    """``visibility`` (public/private), ``resourceGroupId`` and ``region``: kept and shown by info."""
    visibility = body.get("visibility", "public")  # the Hub's default for a user
    if visibility not in ("public", "private"):
        raise SpecError(400, f"visibility {visibility!r} must be 'public' or 'private'")
    settings: dict[str, Any] = {"private": visibility == "private"}
    for key in ("resourceGroupId", "region"):
        value = body.get(key)
        if value is not None:
            if not isinstance(value, str) or not value:
                raise SpecError(400, f"{key} must be a non-empty string")
            settings[key] = value
    return settings


def label_filters(request: Request) -> dict[str, str]:
    """The ``label=key=value`` filters of a list request (``SpecError`` 400 for one without ``=``)."""
    labels: dict[str, str] = {}
    for item in request.query_params.getlist("label"):
        key, sep, value = item.partition("=")
        if not sep:
            raise SpecError(400, f"label filter {item!r} must be key=value")
        labels[key] = value
    return labels


def create_app(
    *,
    token: str,
    namespace: str,
    runner: ProcessRunner | SimulatedRunner,
    store: JobStore,
    keepalive_interval: float = 30.0,
    page_size: int = PAGE_SIZE,
    faults: FaultInjector | None = None,
    on_restart: RestartCallback | None = None,
    allowed_hosts: Iterable[str] = (),
    volumes: Volumes | None = None,
    scheduled_store: ScheduledJobStore | None = None,
) -> Starlette:
    """The Starlette app of one local server: one token, one namespace, jobs kept in ``store`` and run by
    ``runner``; ``on_restart(downtime)`` serves ``POST /_local/restart``. Requests must be addressed to a
    loopback name or one of ``allowed_hosts`` (``"*"``: any). ``volumes``: the buckets and volume sources
    (``None``: volumes and buckets are refused). ``scheduled_store``: the scheduled jobs (``None``: kept
    in memory), whose runs the app's :class:`~.scheduler.Scheduler` starts."""
    closing = asyncio.Event()
    injector = faults or FaultInjector()
    counts: Counter[str] = Counter()
    per_job: Counter[str] = Counter()
    peers: dict[str, set[Any]] = {}  # job id -> client (host, port) of each connection its requests used
    follow_log = functools.partial(log_events, closing=closing, keepalive_interval=keepalive_interval)

    def authorized(request: Request) -> bool:
        given = request.headers.get("authorization", "")
        return secrets.compare_digest(given.encode(), f"Bearer {token}".encode())

    def unauthorized() -> JSONResponse:
        return error(401, "Invalid credentials in Authorization header")

    def job_or_error(request: Request) -> JobRecord | JSONResponse:
        if not authorized(request):
            return unauthorized()
        ns, job_id = request.path_params["namespace"], request.path_params["job_id"]
        job = store.get(ns, job_id)
        return job if job is not None else error(404, "Job not found")

    def expose_conflict(
        request: Request, spec: dict[str, Any], job_id: str | None = None
    ) -> JSONResponse | None:
        """409 for a port another live job exposes, or the server's own: the job binds it on 127.0.0.1."""
        ports = set((spec.get("expose") or {}).get("ports") or [])
        if request.url.port in ports:
            return error(409, f"expose: port {request.url.port} is the local Jobs server's own port")
        message = port_taken(spec, job_id)
        return None if message is None else error(409, message)

    def port_taken(spec: dict[str, Any], job_id: str | None = None) -> str | None:
        """Why a port of ``spec`` cannot be exposed: another live job exposes it (``None``: free)."""
        ports = set((spec.get("expose") or {}).get("ports") or [])
        if not ports:  # nothing to compare: no walk over every job (a create would cost O(jobs) for nothing)
            return None
        for other in store.all():
            if (
                other.id != job_id
                and not other.stage.is_terminal
                and (taken := ports & set(other.exposed_ports))
            ):
                return (
                    f"expose: port {min(taken)} is already exposed by job {other.id} ({other.stage.value}): "
                    "local jobs bind their exposed ports themselves on 127.0.0.1, so two cannot share one"
                )
        return None

    async def check_volumes(spec: dict[str, Any]) -> None:
        """The volumes can be honoured on this machine (``SpecError`` naming the one that cannot)."""
        if not spec.get("volumes"):
            return
        if volumes is None:
            raise SpecError(422, "volumes are not supported by this local Jobs server (no state directory)")
        await asyncio.to_thread(volumes.check, spec["volumes"])  # may probe the machine once

    def bucket_namespace(request: Request) -> str | JSONResponse:
        """The path's namespace (``me``: the token's user), or the error to answer."""
        if not authorized(request):
            return unauthorized()
        if volumes is None:
            return error(501, "Buckets are not supported by this local Jobs server (no state directory)")
        ns = request.path_params["namespace"]
        ns = namespace if ns == "me" else ns
        return ns if ns == namespace else error(403, f"You don't have access to namespace {ns}")

    async def create_bucket(request: Request) -> Response:
        """``POST /api/buckets/{ns}/{name}``: a directory under the state dir; 409 if it exists."""
        ns = bucket_namespace(request)
        if isinstance(ns, Response):
            return ns
        assert volumes is not None
        name = request.path_params["name"]
        url = f"{str(request.base_url).rstrip('/')}/buckets/{ns}/{name}"
        try:
            body = await read_json(request)
            body = {} if body is None else body
            if not isinstance(body, dict):
                raise SpecError(400, "Request body must be a JSON object")
            refuse_unknown(body, BUCKET_FIELDS, "the bucket settings")
            volumes.buckets.create(ns, name, check_bucket_settings(body))
        except SpecError as exc:
            return error(exc.status, str(exc))
        except FileExistsError:
            # The 409 carries the url too: create_bucket(exist_ok=True) reads it from that answer.
            return JSONResponse({"error": f"Bucket {ns}/{name} already exists", "url": url}, status_code=409)
        return JSONResponse({"url": url, "id": f"{ns}/{name}", "name": name})

    async def bucket_info(request: Request) -> Response:
        ns = bucket_namespace(request)
        if isinstance(ns, Response):
            return ns
        assert volumes is not None
        info = await asyncio.to_thread(volumes.buckets.info, f"{ns}/{request.path_params['name']}")
        return JSONResponse(info) if info is not None else error(404, "Bucket not found")

    async def list_buckets(request: Request) -> Response:
        ns = bucket_namespace(request)
        if isinstance(ns, Response):
            return ns
        assert volumes is not None
        found = await asyncio.to_thread(volumes.buckets.list_buckets, ns)
        search = request.query_params.get("search")
        return JSONResponse([info for info in found if not search or search in info["name"]])

    async def bucket_not_supported(request: Request) -> Response:
        """Every other bucket route, the Xet upload first: a clear 501 with what to do instead."""
        if not authorized(request):
            return unauthorized()
        if request.url.path.endswith("/xet-write-token"):
            # The Xet client shows only "501 Not Implemented": say why where the server's user looks too.
            logger.warning("%s %s: %s", request.method, request.url.path, XET_NOT_SUPPORTED)
            return error(501, XET_NOT_SUPPORTED)
        return error(
            501,
            f"{request.method} {request.url.path} is not supported by the local Jobs server: it serves "
            "bucket create, info and list, and keeps each bucket as a directory (buckets/<namespace>/<name>/ "
            "under its state directory), so files cannot be listed, uploaded or synced through the API "
            "(hf buckets cp/sync, hf jobs run -v ./local_dir:/path). Put the files in the bucket's directory, "
            "or write them from a job that mounts the bucket (-v hf://buckets/<namespace>/<name>:/path).",
        )

    async def no_body(request: Request, what: str) -> JSONResponse | None:
        """400 for a body on a route that takes none: whatever it asked for would be ignored."""
        try:
            given = await read_json(request)
        except SpecError as exc:
            return error(exc.status, str(exc))
        if given in (None, {}):
            return None
        return error(400, f"{what} takes no request body; got {json.dumps(given)[:200]}")

    async def read_json(request: Request) -> Any:
        """The JSON body (``SpecError`` 413/400 if too large or not JSON)."""
        raw = await read_body(request)
        if raw is None:
            raise SpecError(413, too_large_message())
        try:
            return json.loads(raw or b"null")
        except (ValueError, UnicodeDecodeError) as exc:
            raise SpecError(400, f"Request body must be JSON: {exc}") from None

    async def whoami(request: Request) -> Response:
        if not authorized(request):
            return unauthorized()
        return JSONResponse(
            {
                "type": "user",
                "id": owner_id(namespace),
                "name": namespace,
                "fullname": namespace,
                "orgs": [],
                "auth": {"type": "access_token", "accessToken": {"displayName": "local", "role": "write"}},
            }
        )

    async def hardware(request: Request) -> Response:
        if not authorized(request):
            return unauthorized()
        return JSONResponse(HARDWARE)

    async def create_job(request: Request) -> Response:
        if not authorized(request):
            return unauthorized()
        ns = request.path_params["namespace"]
        if ns != namespace:
            return error(403, f"You don't have access to namespace {ns}")
        body = await read_body(request)
        if body is None:
            return too_large()
        try:
            spec, secret_values = validate_create(json.loads(body or b"null"))
            await check_volumes(spec)
        except SpecError as exc:
            return error(exc.status, str(exc))
        except (ValueError, UnicodeDecodeError) as exc:
            return error(400, f"Request body must be JSON: {exc}")
        if conflict := expose_conflict(request, spec):
            return conflict
        job = store.create(ns, spec, secret_values)
        runner.start(job)
        return JSONResponse(job.to_json())

    async def list_jobs(request: Request) -> Response:
        if not authorized(request):
            return unauthorized()
        ns = request.path_params["namespace"]
        if ns != namespace:
            return error(403, f"You don't have access to namespace {ns}")
        query = request.query_params
        try:
            labels = label_filters(request)
        except SpecError as exc:
            return error(exc.status, str(exc))
        stages = [stage.upper() for stage in query.getlist("stage")]
        try:
            offset = max(0, int(query.get("offset", "0")))
        except ValueError:
            return error(400, "offset must be an integer")
        jobs = store.list_jobs(ns, stages, labels)
        page = jobs[offset : offset + page_size]
        response = JSONResponse([job.to_json() for job in page])
        if offset + page_size < len(jobs):
            params = [(k, v) for k, v in query.multi_items() if k != "offset"] + [
                ("offset", str(offset + page_size))
            ]
            next_url = f"{request.url.replace(query=urlencode(params))}"
            response.headers["Link"] = f'<{next_url}>; rel="next"'
        return response

    async def inspect_job(request: Request) -> Response:
        job = job_or_error(request)
        return job if isinstance(job, Response) else JSONResponse(job.to_json())

    async def cancel_job(request: Request) -> Response:
        job = job_or_error(request)
        if isinstance(job, Response):
            return job
        if refusal := await no_body(request, "A cancel"):
            return refusal
        await runner.cancel(job)
        return JSONResponse(job.to_json())

    async def update_labels(request: Request) -> Response:
        job = job_or_error(request)
        if isinstance(job, Response):
            return job
        raw = await read_body(request)
        if raw is None:
            return too_large()
        try:
            body = json.loads(raw or b"null")
            if not isinstance(body, dict) or "labels" not in body:
                raise SpecError(400, 'Request body must be a JSON object {"labels": {key: value}}')
            refuse_unknown(body, ("labels",), "the labels update")
            labels = check_labels(body["labels"])
        except SpecError as exc:
            return error(exc.status, str(exc))
        except (ValueError, UnicodeDecodeError) as exc:
            return error(400, f"Request body must be JSON: {exc}")
        job.set_labels(labels)
        return JSONResponse(job.to_json())

    async def update_expose(request: Request) -> Response:
        """``PUT .../expose``: the complete new port set (``{"ports": [], "portsPublic": []}`` closes all)."""
        job = job_or_error(request)
        if isinstance(job, Response):
            return job
        try:
            expose = check_expose(await read_json(request), "the expose update")
        except SpecError as exc:
            return error(exc.status, str(exc))
        if job.stage.is_terminal:
            return error(409, f"Job {job.id} is {job.stage.value}: only a running job's ports can change")
        if conflict := expose_conflict(request, {"expose": expose}, job.id):
            return conflict
        job.set_expose(expose)
        return JSONResponse(job.to_json())

    async def duplicate_job(request: Request) -> Response:
        """``POST .../duplicate`` (rerun): a new job with the same spec, initiated by the original."""
        job = job_or_error(request)
        if isinstance(job, Response):
            return job
        if refusal := await no_body(request, "A rerun copies the original's spec as it is: it"):
            return refusal
        if set(job.secrets) != set(job.secret_names):
            return error(
                422,
                f"Job {job.id} cannot be rerun by the local Jobs server: it had secrets "
                f"({', '.join(job.secret_names)}), and the server forgets secret values once a job's "
                "process holds them. Create a new job with the same spec and secrets instead.",
            )
        spec = copy.deepcopy(job.spec)
        try:
            await check_volumes(spec)
        except SpecError as exc:
            return error(exc.status, str(exc))
        if conflict := expose_conflict(request, spec):
            return conflict
        rerun = store.create(
            job.namespace, spec, dict(job.secrets), initiator={"type": "duplicated-job", "id": job.id}
        )
        runner.start(rerun)
        return JSONResponse(rerun.to_json())

    async def job_metrics(request: Request) -> Response:
        """``GET .../metrics``: one ``event: metric`` a second while the job runs; 406 once it finished."""
        job = job_or_error(request)
        if isinstance(job, Response):
            return job
        if job.stage.is_terminal:
            return error(406, f"Job {job.id} is {job.stage.value}: metrics are only streamed while it runs")
        return StreamingResponse(
            _metric_events(job, runner.metrics_sampler(job)),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def _metric_events(job: JobRecord, sampler: Any) -> AsyncIterator[bytes]:
        """A sample at once, then one a second; nothing while the job waits; ends when the job does."""
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while not job.stage.is_terminal and not closing.is_set():
            if job.stage is JobStage.RUNNING and (
                event := await asyncio.to_thread(sampler.read) if sampler.blocking else sampler.read()
            ):
                payload = json.dumps(event, separators=(",", ":"))
                yield f"event: metric\ndata: {payload}\n\n".encode()
            next_at += METRICS_INTERVAL
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(closing.wait(), max(0.0, next_at - loop.time()))

    async def job_logs(request: Request) -> Response:
        job = job_or_error(request)
        if isinstance(job, Response):
            return job
        tail = request.query_params.get("tail")
        try:
            tail_lines = None if tail is None else max(0, int(tail))
        except ValueError:
            return error(400, "tail must be an integer")
        return StreamingResponse(
            follow_log(job, tail_lines, cut_after=request.scope.get(CUT_SCOPE_KEY)),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def faults_control(request: Request) -> Response:
        """``GET`` lists, ``POST`` adds (JSON fault), ``DELETE`` clears the injected faults."""
        if not authorized(request):
            return unauthorized()
        if request.method == "POST":
            raw = await read_body(request)
            if raw is None:
                return too_large()
            try:
                fault = Fault.from_json(json.loads(raw or b"{}"))
            except (ValueError, TypeError) as exc:
                return error(400, str(exc))
            injector.add(fault)
        elif request.method == "DELETE":
            injector.clear()
        return JSONResponse([fault.to_json() for fault in injector.active()])

    async def restart_control(request: Request) -> Response:
        """``POST {"downtime": seconds}``: stop serving, wait, serve again from the same state (202 first)."""
        if not authorized(request):
            return unauthorized()
        if on_restart is None:
            return error(404, "This server cannot restart itself")
        raw = await read_body(request)
        if raw is None:
            return too_large()
        try:
            body = json.loads(raw or b"{}")
            downtime = float(body.get("downtime", 0.0))
        except (ValueError, TypeError, AttributeError) as exc:
            return error(400, f"downtime must be a number of seconds ({exc})")
        if downtime < 0:
            return error(400, "downtime must not be negative")
        on_restart(downtime)
        return JSONResponse({"restarting": True, "downtime": downtime}, status_code=202)

    def begin_close() -> None:
        """End every log stream now: uvicorn would otherwise wait for them before it stops."""
        closing.set()
        for job in store.all():
            job.wake()

    async def stats_control(request: Request) -> Response:
        """``GET``: API requests served, by kind (and by job, with the connections they used, with
        ``?per_job=1``), and jobs by stage;
        ``DELETE``: reset the counts."""
        if not authorized(request):
            return unauthorized()
        if request.method == "DELETE":
            counts.clear()
            per_job.clear()
            peers.clear()
        stages = Counter(job.stage.value for job in store.all())
        body: dict[str, Any] = {"requests": dict(counts), "total": sum(counts.values()), "jobs": dict(stages)}
        if request.query_params.get("per_job"):
            body["per_job"] = dict(per_job)
            body["per_job_connections"] = {job_id: len(clients) for job_id, clients in peers.items()}
        return JSONResponse(body)

    # ----------------------------------------------------------------------------------- scheduled jobs
    def active_runs(record: ScheduledJobRecord) -> list[JobRecord]:
        """The scheduled job's runs still SCHEDULING or RUNNING."""
        return [
            job
            for job in store.all()
            if not job.stage.is_terminal
            and (job.initiator or {}).get("type") == "scheduled-job"
            and (job.initiator or {}).get("id") == record.id
        ]

    def start_scheduled_run(record: ScheduledJobRecord) -> JobRecord | str:
        """A run of the scheduled job, made and started as ``POST /api/jobs`` makes one (its spec and
        labels as they are now, its secrets); or why it cannot start now."""
        if not record.concurrency and (active := active_runs(record)):
            return (
                f"Scheduled job {record.id} does not allow concurrent runs (concurrency is false) and its "
                f"run {active[0].id} is still {active[0].stage.value}"
            )
        spec = copy.deepcopy(record.spec)
        if (taken := port_taken(spec)) is not None:
            return taken
        initiator = {"type": "scheduled-job", "id": record.id}
        if name := record.labels.get("name"):
            initiator["name"] = name
        job = store.create(record.namespace, spec, dict(record.secrets), initiator=initiator)
        runner.start(job)
        record.record_run(job.id, job.created_at)
        return job

    def scheduled_tick_run(record: ScheduledJobRecord) -> None:
        outcome = start_scheduled_run(record)
        if isinstance(outcome, str):
            logger.info("scheduled job %s: run skipped: %s", record.id, outcome)

    schedules = scheduled_store if scheduled_store is not None else ScheduledJobStore()
    scheduler = Scheduler(schedules, scheduled_tick_run)

    def scheduled_or_error(request: Request) -> ScheduledJobRecord | JSONResponse:
        if not authorized(request):
            return unauthorized()
        ns, scheduled_id = request.path_params["namespace"], request.path_params["scheduled_job_id"]
        record = schedules.get(ns, scheduled_id)
        return record if record is not None else error(404, "Scheduled job not found")

    def checked_schedule(value: Any) -> str:
        try:
            return validate_schedule(value)
        except HfJobsInputError as exc:
            raise SpecError(400, str(exc)) from None

    def checked_flag(body: dict[str, Any], key: str) -> bool:
        value = body.get(key)
        if value is not None and not isinstance(value, bool):
            raise SpecError(400, f"{key} must be true or false; got {json.dumps(value)}")
        return bool(value)

    async def create_scheduled(request: Request) -> Response:
        """``POST /api/scheduled-jobs/{ns}``: ``{"jobSpec", "schedule", "concurrency"?, "suspend"?}``; the
        jobSpec is checked exactly as a job create body."""
        if not authorized(request):
            return unauthorized()
        ns = request.path_params["namespace"]
        if ns != namespace:
            return error(403, f"You don't have access to namespace {ns}")
        try:
            body = await read_json(request)
            if not isinstance(body, dict):
                raise SpecError(
                    400, 'Request body must be a JSON object {"jobSpec": {...}, "schedule": "..."}'
                )
            refuse_unknown(body, SCHEDULED_FIELDS, "the scheduled job")
            if "jobSpec" not in body:
                raise SpecError(
                    400, "jobSpec is required: the job each run starts (the body of a job create)"
                )
            if "schedule" not in body:
                raise SpecError(
                    400, "schedule is required: a 5-field cron expression or @hourly, @daily, ..."
                )
            schedule = checked_schedule(body["schedule"])
            suspend, concurrency = checked_flag(body, "suspend"), checked_flag(body, "concurrency")
            try:
                spec, secret_values = validate_create(body["jobSpec"])
            except SpecError as exc:
                raise SpecError(exc.status, f"jobSpec: {exc}") from None
            await check_volumes(spec)
        except SpecError as exc:
            return error(exc.status, str(exc))
        if request.url.port in set((spec.get("expose") or {}).get("ports") or []):
            return error(409, f"expose: port {request.url.port} is the local Jobs server's own port")
        record = schedules.create(ns, spec, secret_values, schedule, suspend=suspend, concurrency=concurrency)
        scheduler.plan(record)
        return JSONResponse(record.to_json())

    async def list_scheduled(request: Request) -> Response:
        """``GET /api/scheduled-jobs/{ns}``, optionally ``?label=k=v`` (repeatable: all must match)."""
        if not authorized(request):
            return unauthorized()
        ns = request.path_params["namespace"]
        if ns != namespace:
            return error(403, f"You don't have access to namespace {ns}")
        try:
            labels = label_filters(request)
        except SpecError as exc:
            return error(exc.status, str(exc))
        return JSONResponse([record.to_json() for record in schedules.list_scheduled_jobs(ns, labels)])

    async def inspect_scheduled(request: Request) -> Response:
        record = scheduled_or_error(request)
        return record if isinstance(record, Response) else JSONResponse(record.to_json())

    async def delete_scheduled(request: Request) -> Response:
        """No more runs, and its secret values are gone; runs already started go on."""
        record = scheduled_or_error(request)
        if isinstance(record, Response):
            return record
        if refusal := await no_body(request, "A delete"):
            return refusal
        schedules.delete(record)
        scheduler.wake()
        return JSONResponse(record.to_json())

    def set_scheduled_suspend(record: ScheduledJobRecord, suspend: bool) -> ScheduledJobRecord:
        """Suspend or resume (the API's ``.../suspend``, ``.../resume`` and the list page's buttons)."""
        if record.suspend != suspend:
            record.suspend = suspend
            record.touch()
            scheduler.plan(record)  # suspended: no next run; resumed: the next one from now
        return record

    def trigger_scheduled_run(record: ScheduledJobRecord) -> JobRecord:
        """One run now, the schedule untouched (the API's ``.../run`` and the page's "Run now");
        ``SpecError`` 409 while a run is active and ``concurrency`` is false."""
        outcome = start_scheduled_run(record)
        if isinstance(outcome, str):
            raise SpecError(409, outcome)
        return outcome

    async def set_suspended(request: Request, suspend: bool) -> Response:
        record = scheduled_or_error(request)
        if isinstance(record, Response):
            return record
        if refusal := await no_body(request, "A suspend" if suspend else "A resume"):
            return refusal
        return JSONResponse(set_scheduled_suspend(record, suspend).to_json())

    async def suspend_scheduled(request: Request) -> Response:
        return await set_suspended(request, True)

    async def resume_scheduled(request: Request) -> Response:
        return await set_suspended(request, False)

    async def update_schedule(request: Request) -> Response:
        """``POST .../schedule`` ``{"schedule"}``: the next run is recomputed from now."""
        record = scheduled_or_error(request)
        if isinstance(record, Response):
            return record
        try:
            body = await read_json(request)
            if not isinstance(body, dict) or "schedule" not in body:
                raise SpecError(400, 'Request body must be a JSON object {"schedule": "..."}')
            refuse_unknown(body, ("schedule",), "the schedule update")
            record.schedule = checked_schedule(body["schedule"])
        except SpecError as exc:
            return error(exc.status, str(exc))
        record.touch()
        scheduler.plan(record)
        return JSONResponse(record.to_json())

    async def update_scheduled_labels(request: Request) -> Response:
        """``PUT .../labels`` ``{"labels"}``: replaces them all; future runs carry the new ones."""
        record = scheduled_or_error(request)
        if isinstance(record, Response):
            return record
        try:
            body = await read_json(request)
            if not isinstance(body, dict) or "labels" not in body:
                raise SpecError(400, 'Request body must be a JSON object {"labels": {key: value}}')
            refuse_unknown(body, ("labels",), "the labels update")
            record.spec["labels"] = check_labels(body["labels"])
        except SpecError as exc:
            return error(exc.status, str(exc))
        record.touch()
        return JSONResponse(record.to_json())

    async def trigger_scheduled(request: Request) -> Response:
        """``POST .../run``: one run now (the schedule is untouched); 409 while a run is active and
        ``concurrency`` is false."""
        record = scheduled_or_error(request)
        if isinstance(record, Response):
            return record
        if refusal := await no_body(request, "A trigger"):
            return refusal
        try:
            job = trigger_scheduled_run(record)
        except SpecError as exc:
            return error(exc.status, str(exc))
        return JSONResponse(job.to_json())

    async def not_found(request: Request) -> Response:
        return error(404, "Not found")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.loop = asyncio.get_running_loop()
        for job in store.unfinished():  # a restart on a kept state directory
            runner.resume(job)
        scheduler.start()  # after the resumed jobs: a run still active counts for concurrency
        try:
            yield
        finally:
            begin_close()
            await scheduler.stop()
            await runner.shutdown()

    pages = JobPages(
        token=token, namespace=namespace, store=store, runner=runner, follow_log=follow_log,
        authorized=authorized, read_body=read_body,
        scheduled=ScheduledActions(
            store=schedules,
            suspend=lambda record: set_scheduled_suspend(record, True),
            resume=lambda record: set_scheduled_suspend(record, False),
            trigger=trigger_scheduled_run,
        ),
    )  # fmt: skip
    routes = [
        Route("/api/whoami-v2", whoami),
        Route("/api/jobs/hardware", hardware),  # before /api/jobs/{namespace}: same shape
        Route("/api/jobs/{namespace}", create_job, methods=["POST"]),
        Route("/api/jobs/{namespace}", list_jobs, methods=["GET"]),
        Route("/api/jobs/{namespace}/{job_id}", inspect_job, methods=["GET"]),
        Route("/api/jobs/{namespace}/{job_id}/logs", job_logs, methods=["GET"]),
        Route("/api/jobs/{namespace}/{job_id}/cancel", cancel_job, methods=["POST"]),
        Route("/api/jobs/{namespace}/{job_id}/labels", update_labels, methods=["PUT"]),
        Route("/api/jobs/{namespace}/{job_id}/expose", update_expose, methods=["PUT"]),
        Route("/api/jobs/{namespace}/{job_id}/duplicate", duplicate_job, methods=["POST"]),
        Route("/api/jobs/{namespace}/{job_id}/metrics", job_metrics, methods=["GET"]),
        Route("/api/scheduled-jobs/{namespace}", create_scheduled, methods=["POST"]),
        Route("/api/scheduled-jobs/{namespace}", list_scheduled, methods=["GET"]),
        Route(SCHEDULED_JOB, inspect_scheduled, methods=["GET"]),
        Route(SCHEDULED_JOB, delete_scheduled, methods=["DELETE"]),
        Route(f"{SCHEDULED_JOB}/suspend", suspend_scheduled, methods=["POST"]),
        Route(f"{SCHEDULED_JOB}/resume", resume_scheduled, methods=["POST"]),
        Route(f"{SCHEDULED_JOB}/schedule", update_schedule, methods=["POST"]),
        Route(f"{SCHEDULED_JOB}/run", trigger_scheduled, methods=["POST"]),
        Route(f"{SCHEDULED_JOB}/labels", update_scheduled_labels, methods=["PUT"]),
        Route("/api/buckets/{namespace}", list_buckets, methods=["GET"]),
        Route("/api/buckets/{namespace}/{name}", create_bucket, methods=["POST"]),
        Route("/api/buckets/{namespace}/{name}", bucket_info, methods=["GET"]),
        Route(
            "/api/buckets/{rest:path}",
            bucket_not_supported,
            methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"],
        ),
        Route("/api/agent-harnesses", not_found),
        Route("/_local/faults", faults_control, methods=["GET", "POST", "DELETE"]),
        Route("/_local/restart", restart_control, methods=["POST"]),
        Route("/_local/stats", stats_control, methods=["GET", "DELETE"]),
        *pages.routes(),  # the job pages: /, /jobs/..., /_local/login, /_local/static/...
    ]
    from starlette.exceptions import HTTPException

    async def http_error(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        return error(status, "Not found" if status == 404 else str(getattr(exc, "detail", exc)))

    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={HTTPException: http_error})
    app.add_middleware(FaultMiddleware, injector=injector)
    app.add_middleware(
        RequestCounter, counts=counts, per_job=per_job, peers=peers, token=token,
        request_kind=request_kind, skip=is_control_or_page,
    )  # fmt: skip
    app.add_middleware(HostGuard, allowed_hosts=allowed_hosts)  # before anything counts or faults
    app.add_middleware(ProtocolHeaders)
    app.state.store = store
    app.state.runner = runner
    app.state.scheduled_store = schedules
    app.state.scheduler = scheduler
    app.state.closing = closing
    app.state.begin_close = begin_close
    app.state.faults = injector
    return app
