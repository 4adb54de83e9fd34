"""Job pages of the local Jobs server: what ``JobInfo.url`` and the Airflow "Hugging Face Job" link open.

``/jobs/{namespace}`` lists the scheduled jobs (with Suspend/Resume and Run now buttons) and the jobs,
newest first; ``/jobs/{namespace}/{id}`` shows one job: its spec (secret *names* only), who started it,
times, cost, a live log (``/events``, the API's own log stream) and a Cancel button.

Sessions are bound to this server's origin (:mod:`.sessions`): those two paths answer one HTML shell
without any data, and its one script (``static/job.js``) asks for the server's token once
(``POST /_local/login``, JSON), keeps the session id it gets in ``sessionStorage`` (scoped to scheme, host
and port) and sends it in the ``X-HFJobs-Session`` header to the JSON endpoints here: the views
(``/_local/view/jobs/...``), the status, the log stream (read with ``fetch``: an EventSource cannot send a
header) and the buttons (``POST``). No cookie is ever set, so no other server on 127.0.0.1 receives
anything it could replay, and a page of another origin can neither read these answers nor send the
header (so no CSRF field is needed); :class:`~.app.HostGuard` refuses state changes whose ``Origin`` is
not this server's own. A script holding the API's bearer token may call every endpoint too.

A view is JsonML (``[tag, {attributes}, *children]``, built by :func:`h`): the script creates only
whitelisted elements and attributes, links only to this server's paths, and inserts every string as
text, so labels, commands and log lines (whatever the job's author wrote) never become markup. No inline
script or style: the CSP forbids both, and Trusted Types forbid the script any HTML sink. The
scheduled-job buttons call the very functions the API's ``/api/scheduled-jobs/{ns}/{id}/suspend|resume|
run`` routes call (:class:`ScheduledActions`).
"""

from __future__ import annotations

import hmac
import json
import shlex
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from typing import Any, Protocol
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from airflow_provider_hfjobs.jobs import HardwareInfo, JobInfo, JobStage, ScheduledJobInfo, Volume
from airflow_provider_hfjobs.local.hardware import FLAVORS, hardware_entry
from airflow_provider_hfjobs.local.scheduled_store import ScheduledJobRecord, ScheduledJobStore
from airflow_provider_hfjobs.local.sessions import PageSessions
from airflow_provider_hfjobs.local.spec import SpecError
from airflow_provider_hfjobs.local.store import JobRecord, JobStore

#: Where the static files are served; paths under ``/_local/`` are never counted nor faulted.
STATIC_PREFIX = "/_local/static"
#: The views (JSON) of the pages: ``VIEW_PREFIX + location.pathname``.
VIEW_PREFIX = "/_local/view"
LOGIN_PATH = "/_local/login"
LOGOUT_PATH = "/_local/logout"
#: The static files, by name: only these are served (no path from a request touches the disk).
STATIC_TYPES = {"job.js": "text/javascript; charset=utf-8", "pages.css": "text/css; charset=utf-8"}
#: Log lines a job page starts from (its older lines stay readable through the API's ``/logs``).
PAGE_LOG_TAIL = 5000
#: Jobs the list shows, newest first.
LIST_LIMIT = 200
#: A login body is a token in JSON: anything longer is refused unread.
LOGIN_LIMIT = 16 << 10
#: Characters of a command shown in the list.
SHORT_COMMAND = 80
#: The list page's scheduled-job buttons, by the last part of their path.
SCHEDULED_BUTTONS = {"suspend": "Suspend", "resume": "Resume", "run": "Run now"}
WRONG_TOKEN = "That is not this server's token. Copy the HF_TOKEN that hfjobs-local serve printed."

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
        "require-trusted-types-for 'script'; trusted-types 'none'"
    ),
    "X-Frame-Options": "DENY",
    # Not ``no-referrer``: under it a browser sends ``Origin: null`` with the page's own posts, which
    # HostGuard rightly refuses. ``same-origin`` still tells other sites nothing.
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Cross-Origin-Resource-Policy": "same-origin",
}

#: One element of a view: ``[tag, {attributes}, *children]``; a string is text.
Node = str | list[Any]


class LogFollower(Protocol):
    """:func:`~.app.log_events` bound to its server: the API's log stream, for the page too."""

    def __call__(self, job: JobRecord, tail: int | None) -> AsyncIterator[bytes]: ...


class Canceller(Protocol):
    async def cancel(self, job: JobRecord) -> None: ...


@dataclass(frozen=True)
class ScheduledActions:
    """The app's scheduled jobs and what its API routes do to them: the list page's buttons call these
    same functions. Each returns what it changed or started, or raises :class:`~.spec.SpecError` with
    the API's status (409: a run is active and ``concurrency`` is false)."""

    store: ScheduledJobStore
    suspend: Callable[[ScheduledJobRecord], ScheduledJobRecord]
    resume: Callable[[ScheduledJobRecord], ScheduledJobRecord]
    trigger: Callable[[ScheduledJobRecord], JobRecord]


def is_page_path(path: str) -> bool:
    """Paths served here (besides ``/_local/...``): not API requests, so never counted nor faulted."""
    return path in ("/", "/jobs", "/favicon.ico") or path.startswith("/jobs/")


def secured(response: Response) -> Response:
    """The page headers: no framing, no referrer, no caching, nothing but this server's own script."""
    response.headers.update(SECURITY_HEADERS)
    return response


class PageJSON(JSONResponse):
    """JSON for the page's script, with ``<``, ``>`` and ``&`` as ``\\u`` escapes: whatever a job's
    author wrote, no answer of these pages holds markup, even if something were to sniff it as HTML."""

    def render(self, content: Any) -> bytes:
        text = json.dumps(content, ensure_ascii=False, separators=(",", ":"))
        return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026").encode()


def answer(content: dict[str, Any], status: int = 200) -> Response:
    return secured(PageJSON(content, status_code=status))


def format_moment(moment: datetime | None) -> str:
    return "—" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.1f} s" if isinstance(seconds, float) else f"{seconds} s"
    whole = int(seconds)
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


def job_duration(job: JobInfo) -> str:
    """Running time once started (what is billed), else how long it has waited."""
    if job.started_at is None:
        waited = format_duration(job.total_secs)
        return "not started" if job.is_terminal else f"waiting {waited}"
    return format_duration(job.billed_seconds)


def job_cost(job: JobInfo) -> str:
    """What the run costs on Hugging Face at the flavor's price: the operator's own computation
    (:meth:`HardwareInfo.cost_usd` of :attr:`JobInfo.billed_seconds`), priced from the server's table."""
    billed = job.billed_seconds
    if not job.flavor or job.flavor not in FLAVORS or billed is None:
        return "—"
    hardware = HardwareInfo.from_api(hardware_entry(job.flavor))
    return (
        f"${round(hardware.cost_usd(billed), 8):.6f} "
        f"({hardware.pretty_name}, ${hardware.unit_cost_usd:.6f} per {hardware.unit_label})"
    )


def job_attempts(job: JobInfo) -> str:
    return f"{job.attempts or 1}" + (f", {job.failure_count} failed" if job.failure_count else "")


def command_line(job: JobInfo) -> str:
    return shlex.join([*job.command, *job.arguments])


def shorten(text: str, limit: int = SHORT_COMMAND) -> str:
    return text if len(text) <= limit else f"{text[: limit - 1]}…"


def job_path(namespace: str, job_id: str, suffix: str = "") -> str:
    return f"/jobs/{quote(namespace, safe='')}/{quote(job_id, safe='')}{suffix}"


def list_path(namespace: str) -> str:
    return f"/jobs/{quote(namespace, safe='')}"


def scheduled_path(namespace: str, scheduled_id: str, action: str) -> str:
    return f"{list_path(namespace)}/scheduled/{quote(scheduled_id, safe='')}/{quote(action, safe='')}"


def scheduled_anchor(scheduled_id: str) -> str:
    """The element id of a scheduled job's row on the list (the job page links there)."""
    return f"scheduled-{scheduled_id}"


# ----------------------------------------------------------------------------------------------- views
def h(tag: str, attributes: dict[str, str] | None = None, *children: Node | None) -> list[Any]:
    """One element of a view (JsonML); empty children are left out. The script builds it as DOM, every
    string a text node, so nothing here is ever escaped (nor could be forgotten)."""
    return [tag, dict(attributes or {}), *(child for child in children if child is not None and child != "")]


def code(text: str) -> list[Any]:
    return h("code", {}, text)


def none(text: str = "none") -> list[Any]:
    return h("span", {"class": "none"}, text)


def command_node(job: JobInfo) -> Node:
    """One shell line; a multi-line script (``python -c "..."``) one argument a block, unquoted."""
    argv = [*job.command, *job.arguments]
    if not any("\n" in arg for arg in argv):
        return code(command_line(job))
    return h("ol", {"class": "argv"}, *(h("li", {}, h("pre", {}, arg)) for arg in argv))


def initiator_nodes(job: JobInfo) -> list[Node]:
    """Who started the job: a scheduled job (linked to its row on the list), a rerun job, or a user."""
    who = job.initiator
    if who is None:
        return [none("—")]
    ns = job.owner_name or ""
    if who.type == "scheduled-job":
        href = f"{list_path(ns)}#{quote(scheduled_anchor(who.id), safe='')}"
        return ["scheduled job ", h("a", {"href": href}, code(who.id)), f" ({who.name})" if who.name else ""]
    if who.type == "duplicated-job":
        return ["duplicate of job ", h("a", {"href": job_path(ns, who.id)}, code(who.id))]
    return [f"{who.type} {who.name or who.id}"]


def stage_badge(stage: JobStage, element_id: str | None = None) -> list[Any]:
    attributes = {"class": f"stage stage-{stage.value}", **({"id": element_id} if element_id else {})}
    return h("span", attributes, stage.value)


def chips(items: Iterable[tuple[str, str]]) -> list[Node]:
    return [h("span", {"class": "chip"}, f"{key}={value}") for key, value in items] or [none()]


def volume_item(volume: Volume) -> list[Any]:
    read_only = " (read-only)" if volume.read_only else ""
    return h("li", {}, code(f"{volume.type}:{volume.source}"), " → ", code(volume.mount_path), read_only)


def detail_rows(job: JobInfo) -> list[tuple[str, list[Node], str]]:
    """(label, cell contents, element id) of the job page's table."""
    where: list[Node] = (
        [code(job.docker_image)]
        if job.docker_image
        else ["space ", code(job.space_id)]
        if job.space_id
        else ["—"]
    )
    volumes: list[Node] = (
        [h("ul", {}, *(volume_item(volume) for volume in job.volumes))] if job.volumes else [none()]
    )
    rows: list[tuple[str, list[Node], str]] = [
        ("Image", where, "image"),
        ("Command", [command_node(job)], "command"),
        ("Flavor", [code(job.flavor or "—")], "flavor"),
        ("Started by", initiator_nodes(job), "initiator"),
        ("Labels", chips(sorted(job.labels.items())), "labels"),
        ("Environment", chips(sorted(job.environment.items())), "environment"),
        ("Secrets", chips((name, "***") for name in job.secret_names), "secrets"),
        ("Created", [format_moment(job.created_at)], "created"),
        ("Started", [format_moment(job.started_at)], "started"),
        ("Finished", [format_moment(job.finished_at)], "finished"),
        ("Duration", [job_duration(job)], "duration"),
        ("Cost", [job_cost(job)], "cost"),
        ("Volumes", volumes, "volumes"),
        ("Attempts", [job_attempts(job)], "attempts"),
    ]
    if job.expose_urls:
        exposed: list[Node] = [part for url in job.expose_urls for part in (code(url), " ")]
        rows.append(("Exposed", exposed[:-1], "expose"))
    return rows


def status_json(job: JobInfo) -> dict[str, Any]:
    """What the page's script updates every second: the fields that change while a job runs."""
    return {
        "stage": job.stage.value,
        "terminal": job.is_terminal,
        "message": job.message or "",
        "started": format_moment(job.started_at),
        "finished": format_moment(job.finished_at),
        "duration": job_duration(job),
        "cost": job_cost(job),
        "attempts": job_attempts(job),
    }


def table(css: str, headings: Iterable[str], rows: Iterable[list[Any]]) -> list[Any]:
    head = h("thead", {}, h("tr", {}, *(h("th", {}, heading) for heading in headings)))
    return h("table", {"class": css}, head, h("tbody", {}, *rows))


#: The page every ``/jobs/...`` path answers: no data, no secret; the script fills it (see the docstring).
SHELL = (
    '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
    '<meta name="viewport" content="width=device-width, initial-scale=1"><title>Local HF Jobs</title>'
    f'<link rel="stylesheet" href="{STATIC_PREFIX}/pages.css">'
    f'<script src="{STATIC_PREFIX}/job.js" defer></script></head><body>'
    '<header class="masthead"><a class="brand" href="/">Local HF Jobs</a>'
    '<span id="namespace" class="namespace"></span>'
    '<button id="logout" type="button" hidden>Log out</button></header>'
    '<main id="login" class="login" hidden><h1>Local Hugging Face Jobs server</h1>'
    "<p>Paste the server's token to see its jobs — <code>hfjobs-local serve</code> prints it "
    "(<code>HF_TOKEN=…</code>); a server you started yourself has it in <code>server.token</code>.</p>"
    '<p id="login-problem" class="error" role="alert" hidden></p>'
    f'<form id="login-form" method="post" action="{LOGIN_PATH}">'
    '<label>Token <input id="token" type="password" name="token" autocomplete="off" required></label>'
    '<button type="submit">Log in</button></form></main>'
    '<main id="view" hidden><div id="notices"></div><div id="content"></div></main>'
    "<noscript><main><p>These pages need JavaScript: they keep their session in this tab, never in a "
    "cookie.</p></main></noscript></body></html>\n"
)


class JobPages:
    """The page routes of one server, with the login sessions they know (in memory only)."""

    def __init__(
        self,
        *,
        token: str,
        namespace: str,
        store: JobStore,
        runner: Canceller,
        follow_log: LogFollower,
        authorized: Callable[[Request], bool],
        read_body: Callable[[Request, int], Awaitable[bytes | None]],
        scheduled: ScheduledActions | None = None,
    ) -> None:
        self.token = token
        self.namespace = namespace
        self.store = store
        self.runner = runner
        self.follow_log = follow_log
        self.authorized = authorized
        self.read_body = read_body
        self.scheduled = scheduled
        self.sessions = PageSessions()
        self._static = {
            name: (resources.files(__package__) / "static" / name).read_bytes() for name in STATIC_TYPES
        }

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/", self.home, methods=["GET"]),
            Route("/jobs", self.home, methods=["GET"]),
            Route("/jobs/{namespace}", self.shell, methods=["GET"]),
            Route("/jobs/{namespace}/{job_id}", self.shell, methods=["GET"]),
            Route(f"{VIEW_PREFIX}/jobs/{{namespace}}", self.list_view, methods=["GET"]),
            Route(f"{VIEW_PREFIX}/jobs/{{namespace}}/{{job_id}}", self.job_view, methods=["GET"]),
            Route("/jobs/{namespace}/{job_id}/events", self.job_events, methods=["GET"]),
            Route("/jobs/{namespace}/{job_id}/status", self.job_status, methods=["GET"]),
            Route("/jobs/{namespace}/{job_id}/cancel", self.job_cancel, methods=["POST"]),
            Route(
                "/jobs/{namespace}/scheduled/{scheduled_job_id}/{action}",
                self.scheduled_action,
                methods=["POST"],
            ),
            Route(LOGIN_PATH, self.login, methods=["POST"]),
            # POST only, with the session header: a GET (any page's <img>) must not end a session.
            Route(LOGOUT_PATH, self.logout, methods=["POST"]),
            Route(f"{STATIC_PREFIX}/{{name}}", self.static, methods=["GET"]),
            Route("/favicon.ico", self.no_icon, methods=["GET"]),
        ]

    # -------------------------------------------------------------------------------------- sessions
    def allowed(self, request: Request) -> bool:
        """A page session (its header), or the API's bearer token (scripts and tests)."""
        return self.sessions.of(request) is not None or self.authorized(request)

    @staticmethod
    def log_in_first() -> Response:
        return answer({"error": "Log in"}, 401)

    async def login(self, request: Request) -> Response:
        """``{"token": ...}`` in, ``{"session": ...}`` out: a random id kept in memory here, never the
        token, and never a cookie (the page keeps it in ``sessionStorage``)."""
        raw = await self.read_body(request, LOGIN_LIMIT)
        if raw is None:
            return answer({"error": "That login was too large."}, 413)
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        given = body.get("token") if isinstance(body, dict) else None
        if not isinstance(given, str):
            return answer({"error": 'A login is JSON: {"token": "..."}.'}, 400)
        given = given.strip()
        if not given or not hmac.compare_digest(given.encode(), self.token.encode()):
            return answer({"error": WRONG_TOKEN}, 401)
        return answer({"session": self.sessions.open()})

    async def logout(self, request: Request) -> Response:
        sid = self.sessions.of(request)
        if sid is None:
            return self.log_in_first()
        self.sessions.close(sid)
        return answer({"notice": "Logged out."})

    # ----------------------------------------------------------------------------------------- pages
    async def home(self, request: Request) -> Response:
        return secured(RedirectResponse(list_path(self.namespace), status_code=303))

    async def no_icon(self, request: Request) -> Response:
        """Every browser asks for one: an empty answer, not an API 404 (nor a counted API request)."""
        return secured(Response(status_code=204))

    async def static(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in STATIC_TYPES:
            return secured(HTMLResponse("<!doctype html><title>Not found</title>", status_code=404))
        return secured(Response(self._static[name], media_type=STATIC_TYPES[name]))

    async def shell(self, request: Request) -> Response:
        """The same data-less page for every job path. 401 to a browser (a navigation carries no session):
        the script asks for the token, or sends the one its tab holds; 200 to a request with credentials."""
        return secured(HTMLResponse(SHELL, status_code=200 if self.allowed(request) else 401))

    def not_found(self, what: str) -> Response:
        """A 404 that is both an error (for a button) and a view (for the page)."""
        ns = self.namespace
        body = [
            h("h1", {}, "Not found"),
            h("p", {}, what),
            h("p", {}, h("a", {"href": list_path(ns)}, f"All jobs of {ns}")),
        ]
        return answer(
            {"error": what, "title": "Not found · Local HF Jobs", "namespace": ns, "body": body}, 404
        )

    def find_job(self, request: Request) -> JobRecord | Response:
        """The path's job for an allowed request; else 401, then 404 (a stranger learns nothing)."""
        if not self.allowed(request):
            return self.log_in_first()
        ns, job_id = request.path_params["namespace"], request.path_params["job_id"]
        job = self.store.get(ns, job_id)
        return (
            job if job is not None else self.not_found(f"No job {job_id} in namespace {ns} on this server.")
        )

    def info(self, request: Request, job: JobRecord) -> JobInfo:
        """The job as the API shows it (secret names only), parsed as the hook parses it."""
        return JobInfo.from_api(job.to_json(), endpoint=str(request.base_url))

    async def list_view(self, request: Request) -> Response:
        if not self.allowed(request):
            return self.log_in_first()
        ns = request.path_params["namespace"]
        if ns != self.namespace:
            return self.not_found(f"No namespace {ns} on this server: its jobs are in {self.namespace}.")
        jobs = self.store.list_jobs(ns)
        rows = []
        for record in jobs[:LIST_LIMIT]:
            job = self.info(request, record)
            where = job.docker_image or (f"space {job.space_id}" if job.space_id else "—")
            rows.append(h(
                "tr", {},
                h("td", {}, h("a", {"class": "job-link", "href": job_path(ns, job.id)}, code(job.id))),
                h("td", {}, stage_badge(job.stage)), h("td", {}, code(where)),
                h("td", {}, h("code", {"title": command_line(job)}, shorten(command_line(job)))),
                h("td", {}, job.flavor or "—"), h("td", {}, *chips(sorted(job.labels.items()))),
                h("td", {}, format_moment(job.created_at)), h("td", {}, job_duration(job)),
            ))  # fmt: skip
        count = f"{len(jobs)} job{'' if len(jobs) == 1 else 's'}"
        shown = f"The newest {LIST_LIMIT} of {count}" if len(jobs) > LIST_LIMIT else count
        headings = ("Job", "Stage", "Image", "Command", "Flavor", "Labels", "Created", "Duration")
        scheduled = self.scheduled_section(ns)
        body = [
            h("h1", {}, f"Jobs of {ns}"),
            *([scheduled, h("h2", {}, "Jobs")] if scheduled else []),
            h("p", {}, f"{shown}, newest first."),
            table("jobs", headings, rows) if rows else h("p", {"class": "none"}, "No jobs yet."),
        ]
        return answer({"title": f"Jobs of {ns} · Local HF Jobs", "namespace": ns, "body": body})

    def scheduled_section(self, ns: str) -> list[Any] | None:
        """The list's "Scheduled jobs" table (none without any), each row with its buttons."""
        records = self.scheduled.store.list_scheduled_jobs(ns) if self.scheduled is not None else []
        rows = []
        for record in records:
            info = ScheduledJobInfo.from_api(record.to_json())  # secret names only, as the API shows it
            spec = info.job_spec
            where = spec.docker_image or (f"space {spec.space_id}" if spec.space_id else "—")
            command = shlex.join([*spec.command, *spec.arguments])
            state = "suspended" if info.suspend else "active"
            last = info.last_job
            last_run = (
                [h("a", {"class": "last-run", "href": job_path(ns, last.id)}, code(last.id)), h("br"),
                 h("span", {"class": "when"}, format_moment(last.at))]
                if last is not None
                else [none("none yet")]
            )  # fmt: skip
            buttons = [
                h("button", {"class": f"action-{action}", "data-action": scheduled_path(ns, info.id, action)},
                  SCHEDULED_BUTTONS[action])
                for action in ("resume" if info.suspend else "suspend", "run")
            ]  # fmt: skip
            rows.append(h(
                "tr", {"id": scheduled_anchor(info.id), "class": "scheduled-job"},
                h("td", {}, code(info.id)), h("td", {}, code(info.schedule or "—")),
                h("td", {}, h("span", {"class": f"state state-{state}"}, state)),
                h("td", {}, "allowed" if info.concurrency else "one at a time"),
                h("td", {"class": "next-run"}, format_moment(info.next_job_run_at)), h("td", {}, *last_run),
                h("td", {}, code(where)), h("td", {}, h("code", {"title": command}, shorten(command))),
                h("td", {}, *chips(sorted(spec.labels.items()))), h("td", {"class": "actions"}, *buttons),
            ))  # fmt: skip
        if not rows:
            return None
        headings = ("Scheduled job", "Schedule", "State", "Concurrent runs", "Next run", "Last run", "Image",
                    "Command", "Labels", "")  # fmt: skip
        return h(
            "section", {"id": "scheduled"}, h("h2", {}, "Scheduled jobs"), table("scheduled", headings, rows)
        )

    async def job_view(self, request: Request) -> Response:
        record = self.find_job(request)
        if isinstance(record, Response):
            return record
        job = self.info(request, record)
        ns = record.namespace
        cancel = (
            None
            if job.is_terminal
            else h("button", {"id": "cancel", "data-action": job_path(ns, job.id, "/cancel"),
                              "data-busy": "Cancelling…"}, "Cancel job")
        )  # fmt: skip
        details = [
            h("tr", {}, h("th", {"scope": "row"}, label), h("td", {"id": ident}, *cells))
            for label, cells, ident in detail_rows(job)
        ]
        body = [
            h("p", {"class": "crumbs"}, h("a", {"href": list_path(ns)}, f"Jobs of {ns}"), " /"),
            h("div", {"class": "title"}, h("h1", {}, code(job.id)), stage_badge(job.stage, "stage"), cancel),
            h("p", {"id": "message", "class": "message"}, job.message or ""),
            h("table", {"class": "details"}, h("tbody", {}, *details)),
            h("h2", {}, "Log"),
            h("div", {"id": "log", "class": "log", "aria-live": "polite"}),
            h("p", {"id": "log-state", "class": "none"}, "connecting…"),
        ]
        follow = {"events": job_path(ns, job.id, "/events"), "status": job_path(ns, job.id, "/status")}
        return answer(
            {"title": f"Job {job.id} · Local HF Jobs", "namespace": ns, "body": body, "job": follow}
        )

    async def job_status(self, request: Request) -> Response:
        record = self.find_job(request)
        if isinstance(record, Response):
            return record
        return answer(status_json(self.info(request, record)))

    async def job_events(self, request: Request) -> Response:
        """The job's log as SSE (the API's stream, from its last ``PAGE_LOG_TAIL`` lines), then
        ``event: end`` once the job is over, so the page stops instead of reconnecting (and replaying)."""
        record = self.find_job(request)
        if isinstance(record, Response):
            return record

        async def events() -> AsyncIterator[bytes]:
            async for chunk in self.follow_log(record, PAGE_LOG_TAIL):
                yield chunk
            yield f"event: end\ndata: {json.dumps({'stage': record.stage.value})}\n\n".encode()

        response = StreamingResponse(events(), media_type="text/event-stream")
        response.headers["X-Accel-Buffering"] = "no"
        return secured(response)

    async def job_cancel(self, request: Request) -> Response:
        """The Cancel button: the API's ``runner.cancel``. A session's header (or the bearer token) is the
        proof the page sent it: no other origin can set either."""
        record = self.find_job(request)
        if isinstance(record, Response):
            return record
        await self.runner.cancel(record)  # returns once CANCELED, or after its grace period
        stage = record.stage
        notice = (
            f"Job {record.id} cancelled."
            if stage is JobStage.CANCELED
            else f"Job {record.id} is {stage.value}: nothing to cancel."
            if stage.is_terminal
            else f"Job {record.id}: cancel requested (still {stage.value})."
        )
        return answer({"notice": notice, "stage": stage.value})

    async def scheduled_action(self, request: Request) -> Response:
        """A scheduled job's button on the list (``suspend``, ``resume``, ``run``): what the API's route
        does (the same :class:`ScheduledActions` function); a refusal (409) is the answer's error."""
        if not self.allowed(request):
            return self.log_in_first()
        ns, scheduled_id = request.path_params["namespace"], request.path_params["scheduled_job_id"]
        action = request.path_params["action"]
        record = self.scheduled.store.get(ns, scheduled_id) if self.scheduled is not None else None
        if record is None or action not in SCHEDULED_BUTTONS:
            return self.not_found(f"No scheduled job {scheduled_id} in namespace {ns} on this server.")
        assert self.scheduled is not None
        try:
            if action == "run":
                job = self.scheduled.trigger(record)
                return answer({"notice": f"Scheduled job {record.id}: run {job.id} started.", "job": job.id})
            if action == "suspend":
                self.scheduled.suspend(record)
                return answer(
                    {"notice": f"Scheduled job {record.id} suspended: no runs until it is resumed."}
                )
            self.scheduled.resume(record)
            return answer({"notice": f"Scheduled job {record.id} resumed."})
        except SpecError as exc:
            return answer({"error": f"{SCHEDULED_BUTTONS[action]} refused ({exc.status}): {exc}"}, exc.status)
