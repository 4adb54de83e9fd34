"""Job pages of the local Jobs server: what ``JobInfo.url`` and the Airflow "Hugging Face Job" link open.

``GET /jobs/{namespace}`` lists the scheduled jobs (with Suspend/Resume and Run now buttons) and the
jobs, newest first; ``GET /jobs/{namespace}/{id}`` shows one job: its spec (secret *names* only), who
started it, times, cost, a live log (``/events``, the API's own log stream) and a Cancel button. Plain HTML built here, every value from a job through :func:`html.escape` (labels, commands and
log lines are whatever the job's author wrote); one static script (``static/job.js``) follows the log and
the stage, and inserts log lines as text. No inline script or style: the CSP forbids both.

A browser cannot send the API's ``Authorization: Bearer`` header, so a page without it asks for the
server's token once (``POST /_local/login``) and gets a session cookie: a random id kept in memory here,
never the token. State changes from a page (cancel; suspend, resume, run now) carry a CSRF field derived
from the session and the job or scheduled job they act on, on top of :class:`~.app.HostGuard` (no
cross-site ``Origin``) and the cookie's ``SameSite=Strict``. The scheduled-job buttons call the very
functions the API's ``/api/scheduled-jobs/{ns}/{id}/suspend|resume|run`` routes call
(:class:`ScheduledActions`); their outcome is shown once on the list the browser is sent back to.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import json
import secrets
import shlex
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from typing import Any, Protocol
from urllib.parse import parse_qs, quote, urlencode, urlsplit

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from airflow_provider_hfjobs.jobs import HardwareInfo, JobInfo, JobStage, ScheduledJobInfo
from airflow_provider_hfjobs.local.hardware import FLAVORS, hardware_entry
from airflow_provider_hfjobs.local.scheduled_store import ScheduledJobRecord, ScheduledJobStore
from airflow_provider_hfjobs.local.spec import SpecError
from airflow_provider_hfjobs.local.store import JobRecord, JobStore

#: Where the static files are served; paths under ``/_local/`` are never counted nor faulted.
STATIC_PREFIX = "/_local/static"
LOGIN_PATH = "/_local/login"
LOGOUT_PATH = "/_local/logout"
#: The static files, by name: only these are served (no path from a request touches the disk).
STATIC_TYPES = {"job.js": "text/javascript; charset=utf-8", "pages.css": "text/css; charset=utf-8"}
#: A page session lasts this long (the server keeps its ids in memory; a restart forgets them).
SESSION_SECONDS = 12 * 3600
#: Sessions kept at most; the oldest goes first (each login makes one).
MAX_SESSIONS = 256
#: Log lines a job page starts from (its older lines stay readable through the API's ``/logs``).
PAGE_LOG_TAIL = 5000
#: The reconnection delay the last event of a page's log stream sets (an hour, in milliseconds).
END_RETRY_MS = 3_600_000
#: Jobs the list shows, newest first.
LIST_LIMIT = 200
#: A form body is a token and a path: anything longer is refused unread.
FORM_LIMIT = 16 << 10
#: Characters of a command shown in the list.
SHORT_COMMAND = 80
#: Messages (the outcome of a scheduled job's button) a session keeps until its next list page.
NOTICES_KEPT = 5
#: The list page's scheduled-job buttons, by the last part of their path.
SCHEDULED_BUTTONS = {"suspend": "Suspend", "resume": "Resume", "run": "Run now"}

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    # Not ``no-referrer``: under it a browser sends ``Origin: null`` with the page's own form posts
    # (login, cancel), which HostGuard rightly refuses. ``same-origin`` still tells other sites nothing.
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
}


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


def safe_next(target: str | None) -> str:
    """Where to go after login: a path on this server, else ``/`` (``//evil``, ``http://...`` are not)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in target):
        return "/"
    parts = urlsplit(target)
    return "/" if parts.scheme or parts.netloc else target


def e(value: Any) -> str:
    """Escape for HTML text and double-quoted attributes."""
    return html.escape(str(value), quote=True)


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


def command_line(job: JobInfo) -> str:
    return shlex.join([*job.command, *job.arguments])


def command_html(job: JobInfo) -> str:
    """One shell line; a multi-line script (``python -c "..."``) one argument a block, unquoted."""
    argv = [*job.command, *job.arguments]
    if not any("\n" in arg for arg in argv):
        return f"<code>{e(command_line(job))}</code>"
    return '<ol class="argv">' + "".join(f"<li><pre>{e(arg)}</pre></li>" for arg in argv) + "</ol>"


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


def csrf_subject(scheduled_id: str) -> str:
    """What a scheduled job's CSRF field is bound to: never a job id (those are bare hex)."""
    return f"scheduled-job:{scheduled_id}"


def initiator_html(job: JobInfo) -> str:
    """Who started the job: a scheduled job (linked to its row on the list), a rerun job, or a user."""
    who = job.initiator
    if who is None:
        return '<span class="none">—</span>'
    ns = job.owner_name or ""
    named = f" ({e(who.name)})" if who.name else ""
    if who.type == "scheduled-job":
        href = f"{list_path(ns)}#{quote(scheduled_anchor(who.id), safe='')}"
        return f'scheduled job <a href="{e(href)}"><code>{e(who.id)}</code></a>{named}'
    if who.type == "duplicated-job":
        return f'duplicate of job <a href="{e(job_path(ns, who.id))}"><code>{e(who.id)}</code></a>'
    return f"{e(who.type)} {e(who.name or who.id)}"


def stage_badge(stage: JobStage, element_id: str | None = None) -> str:
    ident = f' id="{e(element_id)}"' if element_id else ""
    return f'<span{ident} class="stage stage-{e(stage.value)}">{e(stage.value)}</span>'


def chips(items: Iterable[tuple[str, str]]) -> str:
    shown = "".join(f'<span class="chip">{e(key)}={e(value)}</span>' for key, value in items)
    return shown or '<span class="none">none</span>'


def document(title: str, body: str, *, script: bool = False, attributes: str = "") -> str:
    tag = f'<script src="{STATIC_PREFIX}/job.js" defer></script>' if script else ""
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<title>{e(title)}</title><link rel="stylesheet" href="{STATIC_PREFIX}/pages.css">{tag}</head>'
        f"<body{attributes}>{body}</body></html>\n"
    )


def page(status: int, title: str, body: str, **kwargs: Any) -> Response:
    return secured(HTMLResponse(document(title, body, **kwargs), status_code=status))


def masthead(namespace: str) -> str:
    return (
        f'<header class="masthead"><a class="brand" href="{e(list_path(namespace))}">Local HF Jobs</a>'
        f'<span class="namespace">{e(namespace)}</span>'
        f'<form method="post" action="{LOGOUT_PATH}" class="logout"><button type="submit">Log out</button>'
        "</form></header>"
    )


def login_form(next_path: str, problem: str | None = None) -> str:
    alert = f'<p class="error" role="alert">{e(problem)}</p>' if problem else ""
    return (
        '<main class="login"><h1>Local Hugging Face Jobs server</h1>'
        "<p>Paste the server's token to see its jobs — <code>hfjobs-local serve</code> prints it "
        "(<code>HF_TOKEN=…</code>); a server you started yourself has it in <code>server.token</code>.</p>"
        f'{alert}<form method="post" action="{LOGIN_PATH}">'
        f'<input type="hidden" name="next" value="{e(next_path)}">'
        '<label>Token <input type="password" name="token" autocomplete="off" autofocus required></label>'
        '<button type="submit">Log in</button></form></main>'
    )


def detail_rows(job: JobInfo) -> list[tuple[str, str, str]]:
    """(label, HTML value, element id) of the job page's table; every job value escaped here."""
    where = (
        f"<code>{e(job.docker_image)}</code>"
        if job.docker_image
        else f"space <code>{e(job.space_id)}</code>"
        if job.space_id
        else "—"
    )
    volumes = (
        "<ul>"
        + "".join(
            f"<li><code>{e(volume.type)}:{e(volume.source)}</code> → <code>{e(volume.mount_path)}</code>"
            + (" (read-only)" if volume.read_only else "")
            + "</li>"
            for volume in job.volumes
        )
        + "</ul>"
        if job.volumes
        else '<span class="none">none</span>'
    )
    attempts = e(job.attempts or 1)
    if job.failure_count:
        attempts += f", {e(job.failure_count)} failed"
    rows = [
        ("Image", where, "image"),
        ("Command", command_html(job), "command"),
        ("Flavor", f"<code>{e(job.flavor or '—')}</code>", "flavor"),
        ("Started by", initiator_html(job), "initiator"),
        ("Labels", chips(sorted(job.labels.items())), "labels"),
        ("Environment", chips(sorted(job.environment.items())), "environment"),
        ("Secrets", chips((name, "***") for name in job.secret_names), "secrets"),
        ("Created", e(format_moment(job.created_at)), "created"),
        ("Started", e(format_moment(job.started_at)), "started"),
        ("Finished", e(format_moment(job.finished_at)), "finished"),
        ("Duration", e(job_duration(job)), "duration"),
        ("Cost", e(job_cost(job)), "cost"),
        ("Volumes", volumes, "volumes"),
        ("Attempts", attempts, "attempts"),
    ]
    if job.expose_urls:
        rows.append(("Exposed", " ".join(f"<code>{e(url)}</code>" for url in job.expose_urls), "expose"))
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
        "attempts": f"{job.attempts or 1}" + (f", {job.failure_count} failed" if job.failure_count else ""),
    }


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
        self._sessions: dict[str, float] = {}  # session id -> when it expires (time.monotonic)
        self._notices: dict[str, list[tuple[bool, str]]] = {}  # session id -> (is an error, text)
        self._csrf_key = secrets.token_bytes(32)
        self._static = {
            name: (resources.files(__package__) / "static" / name).read_bytes() for name in STATIC_TYPES
        }

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/", self.home, methods=["GET"]),
            Route("/jobs", self.home, methods=["GET"]),
            Route("/jobs/{namespace}", self.job_list, methods=["GET"]),
            Route("/jobs/{namespace}/{job_id}", self.job_page, methods=["GET"]),
            Route("/jobs/{namespace}/{job_id}/events", self.job_events, methods=["GET"]),
            Route("/jobs/{namespace}/{job_id}/status", self.job_status, methods=["GET"]),
            Route("/jobs/{namespace}/{job_id}/cancel", self.job_cancel, methods=["POST"]),
            Route(
                "/jobs/{namespace}/scheduled/{scheduled_job_id}/{action}",
                self.scheduled_action,
                methods=["POST"],
            ),
            Route(LOGIN_PATH, self.login_page, methods=["GET"]),
            Route(LOGIN_PATH, self.login, methods=["POST"]),
            Route(LOGOUT_PATH, self.logout, methods=["GET", "POST"]),
            Route(f"{STATIC_PREFIX}/{{name}}", self.static, methods=["GET"]),
            Route("/favicon.ico", self.no_icon, methods=["GET"]),
        ]

    # -------------------------------------------------------------------------------------- sessions
    @staticmethod
    def cookie_name(request: Request) -> str:
        """One cookie per server port: cookies ignore ports, and two local servers must not share one."""
        server = request.scope.get("server")
        return f"hfjobs_local_{server[1]}" if server else "hfjobs_local"

    def session(self, request: Request) -> str | None:
        """The request's live session id, if its cookie carries one."""
        sid = request.cookies.get(self.cookie_name(request))
        expires = self._sessions.get(sid or "")
        if sid is None or expires is None:
            return None
        if expires < time.monotonic():
            self.forget(sid)
            return None
        return sid

    def forget(self, sid: str) -> None:
        self._sessions.pop(sid, None)
        self._notices.pop(sid, None)

    def notify(self, sid: str, text: str, *, problem: bool = False) -> None:
        """A message for the session's next list page (the outcome of a button that redirected there)."""
        kept = self._notices.setdefault(sid, [])
        kept.append((problem, text))
        del kept[:-NOTICES_KEPT]

    def allowed(self, request: Request) -> bool:
        """A page session, or the API's bearer token (scripts and tests)."""
        return self.session(request) is not None or self.authorized(request)

    def csrf(self, session: str, job_id: str) -> str:
        """A form's CSRF field (cancel: the job id; a scheduled job's buttons: :func:`csrf_subject`): only
        a page served to this session can know it."""
        return hmac.new(self._csrf_key, f"{session}\0{job_id}".encode(), hashlib.sha256).hexdigest()

    def csrf_input(self, request: Request, subject: str) -> str:
        """The hidden field of a form acting on ``subject`` (none without a page session)."""
        sid = self.session(request)
        return f'<input type="hidden" name="csrf" value="{e(self.csrf(sid, subject))}">' if sid else ""

    def csrf_refused(self, request: Request, fields: dict[str, str] | None, subject: str) -> bool:
        """A session must send the page's field for ``subject``; a bearer token (no browser sends one
        by itself) need not."""
        sid = self.session(request)
        if sid is None or self.authorized(request):
            return False
        given = (fields or {}).get("csrf", "")
        return not hmac.compare_digest(given.encode(), self.csrf(sid, subject).encode())

    def new_session(self) -> str:
        now = time.monotonic()
        for sid, expires in list(self._sessions.items()):
            if expires < now:
                self.forget(sid)
        while len(self._sessions) >= MAX_SESSIONS:
            self.forget(next(iter(self._sessions)))  # the oldest
        sid = secrets.token_urlsafe(32)
        self._sessions[sid] = now + SESSION_SECONDS
        return sid

    def ask_login(
        self, request: Request, problem: str | None = None, *, target: str | None = None
    ) -> Response:
        """401 with the login form, coming back here (or to ``target``) afterwards."""
        if target is None:
            here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            target = here if request.method == "GET" else here.rsplit("/", 1)[0]  # a refused cancel: its job
        return page(401, "Log in · Local HF Jobs", login_form(safe_next(target), problem))

    async def form(self, request: Request) -> dict[str, str] | None:
        """An urlencoded form's fields (the first value of each), or ``None`` if too large."""
        raw = await self.read_body(request, FORM_LIMIT)
        if raw is None:
            return None
        fields = parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True)
        return {key: values[0] for key, values in fields.items()}

    # ------------------------------------------------------------------------------------- login/out
    async def login_page(self, request: Request) -> Response:
        if self.allowed(request):
            return secured(RedirectResponse(safe_next(request.query_params.get("next")), status_code=303))
        return page(200, "Log in · Local HF Jobs", login_form(safe_next(request.query_params.get("next"))))

    async def login(self, request: Request) -> Response:
        fields = await self.form(request)
        if fields is None:
            return page(413, "Log in · Local HF Jobs", login_form("/", "That form was too large."))
        target = safe_next(fields.get("next"))
        given = fields.get("token", "").strip()
        if not given or not hmac.compare_digest(given.encode(), self.token.encode()):
            problem = "That is not this server's token. Copy the HF_TOKEN that hfjobs-local serve printed."
            return page(401, "Log in · Local HF Jobs", login_form(target, problem))
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            self.cookie_name(request), self.new_session(), httponly=True, samesite="strict", path="/"
        )
        return secured(response)

    async def logout(self, request: Request) -> Response:
        sid = request.cookies.get(self.cookie_name(request))
        if sid:
            self.forget(sid)
        response = RedirectResponse(f"{LOGIN_PATH}?{urlencode({'next': list_path(self.namespace)})}", 303)
        response.delete_cookie(self.cookie_name(request), path="/", httponly=True, samesite="strict")
        return secured(response)

    # ----------------------------------------------------------------------------------------- pages
    async def home(self, request: Request) -> Response:
        return secured(RedirectResponse(list_path(self.namespace), status_code=303))

    async def no_icon(self, request: Request) -> Response:
        """Every browser asks for one: an empty answer, not an API 404 (nor a counted API request)."""
        return secured(Response(status_code=204))

    async def static(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in STATIC_TYPES:
            return page(404, "Not found", "<main><h1>Not found</h1></main>")
        return secured(Response(self._static[name], media_type=STATIC_TYPES[name]))

    def not_found(self, what: str) -> Response:
        body = (
            f"{masthead(self.namespace)}<main><h1>Not found</h1><p>{e(what)}</p>"
            f'<p><a href="{e(list_path(self.namespace))}">All jobs of {e(self.namespace)}</a></p></main>'
        )
        return page(404, "Not found · Local HF Jobs", body)

    def job_or_refusal(self, request: Request) -> JobRecord | Response:
        """The path's job for an allowed request; a login form first, then a 404 page."""
        if not self.allowed(request):
            return self.ask_login(request)
        ns, job_id = request.path_params["namespace"], request.path_params["job_id"]
        job = self.store.get(ns, job_id)
        return (
            job if job is not None else self.not_found(f"No job {job_id} in namespace {ns} on this server.")
        )

    def info(self, request: Request, job: JobRecord) -> JobInfo:
        """The job as the API shows it (secret names only), parsed as the hook parses it."""
        return JobInfo.from_api(job.to_json(), endpoint=str(request.base_url))

    async def job_list(self, request: Request) -> Response:
        if not self.allowed(request):
            return self.ask_login(request)
        ns = request.path_params["namespace"]
        if ns != self.namespace:
            return self.not_found(f"No namespace {ns} on this server: its jobs are in {self.namespace}.")
        jobs = self.store.list(ns)
        rows = []
        for record in jobs[:LIST_LIMIT]:
            job = self.info(request, record)
            where = job.docker_image or (f"space {job.space_id}" if job.space_id else "—")
            rows.append(
                "<tr>"
                f'<td><a class="job-link" href="{e(job_path(ns, job.id))}"><code>{e(job.id)}</code></a></td>'
                f"<td>{stage_badge(job.stage)}</td><td><code>{e(where)}</code></td>"
                f'<td><code title="{e(command_line(job))}">{e(shorten(command_line(job)))}</code></td>'
                f"<td>{e(job.flavor or '—')}</td><td>{chips(sorted(job.labels.items()))}</td>"
                f"<td>{e(format_moment(job.created_at))}</td><td>{e(job_duration(job))}</td></tr>"
            )
        count = f"{len(jobs)} job{'' if len(jobs) == 1 else 's'}"
        shown = f"The newest {LIST_LIMIT} of {count}" if len(jobs) > LIST_LIMIT else count
        table = (
            '<table class="jobs"><thead><tr><th>Job</th><th>Stage</th><th>Image</th><th>Command</th>'
            "<th>Flavor</th><th>Labels</th><th>Created</th><th>Duration</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>"
            if rows
            else '<p class="none">No jobs yet.</p>'
        )
        sid = self.session(request)
        notices = "".join(
            f'<p class="error" role="alert">{e(text)}</p>'
            if problem
            else f'<p class="notice" role="status">{e(text)}</p>'
            for problem, text in (self._notices.pop(sid, []) if sid else [])
        )
        scheduled = self.scheduled_section(request, ns)
        heading = "<h2>Jobs</h2>" if scheduled else ""
        body = (
            f"{masthead(ns)}<main><h1>Jobs of {e(ns)}</h1>{notices}{scheduled}{heading}"
            f"<p>{e(shown)}, newest first.</p>{table}</main>"
        )
        return page(200, f"Jobs of {ns} · Local HF Jobs", body)

    def scheduled_section(self, request: Request, ns: str) -> str:
        """The list's "Scheduled jobs" table (nothing without any), each row with its buttons."""
        records = self.scheduled.store.list(ns) if self.scheduled is not None else []
        rows = []
        for record in records:
            info = ScheduledJobInfo.from_api(record.to_json())  # secret names only, as the API shows it
            spec = info.job_spec
            where = spec.docker_image or (f"space {spec.space_id}" if spec.space_id else "—")
            command = shlex.join([*spec.command, *spec.arguments])
            state = "suspended" if info.suspend else "active"
            last = info.last_job
            last_run = (
                f'<a class="last-run" href="{e(job_path(ns, last.id))}"><code>{e(last.id)}</code></a>'
                f'<br><span class="when">{e(format_moment(last.at))}</span>'
                if last is not None
                else '<span class="none">none yet</span>'
            )
            field = self.csrf_input(request, csrf_subject(info.id))
            forms = "".join(
                f'<form method="post" action="{e(scheduled_path(ns, info.id, action))}">{field}'
                f'<button type="submit" class="action-{e(action)}">{e(SCHEDULED_BUTTONS[action])}</button></form>'
                for action in ("resume" if info.suspend else "suspend", "run")
            )
            rows.append(
                f'<tr id="{e(scheduled_anchor(info.id))}" class="scheduled-job">'
                f"<td><code>{e(info.id)}</code></td><td><code>{e(info.schedule or '—')}</code></td>"
                f'<td><span class="state state-{e(state)}">{e(state)}</span></td>'
                f"<td>{'allowed' if info.concurrency else 'one at a time'}</td>"
                f'<td class="next-run">{e(format_moment(info.next_job_run_at))}</td><td>{last_run}</td>'
                f"<td><code>{e(where)}</code></td>"
                f'<td><code title="{e(command)}">{e(shorten(command))}</code></td>'
                f'<td>{chips(sorted(spec.labels.items()))}</td><td class="actions">{forms}</td></tr>'
            )
        if not rows:
            return ""
        return (
            '<section id="scheduled"><h2>Scheduled jobs</h2><table class="scheduled"><thead><tr><th>Scheduled job'
            "</th><th>Schedule</th><th>State</th><th>Concurrent runs</th><th>Next run</th><th>Last run</th>"
            "<th>Image</th><th>Command</th><th>Labels</th><th></th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table></section>"
        )

    async def job_page(self, request: Request) -> Response:
        record = self.job_or_refusal(request)
        if isinstance(record, Response):
            return record
        job = self.info(request, record)
        ns = record.namespace
        cancel = ""
        if not job.is_terminal:
            field = self.csrf_input(request, job.id)
            cancel = (
                f'<form id="cancel-form" method="post" action="{e(job_path(ns, job.id, "/cancel"))}">'
                f'{field}<button id="cancel" type="submit">Cancel job</button></form>'
            )
        table = "".join(
            f'<tr><th scope="row">{e(label)}</th><td id="{e(ident)}">{value}</td></tr>'
            for label, value, ident in detail_rows(job)
        )
        body = (
            f"{masthead(ns)}<main>"
            f'<p class="crumbs"><a href="{e(list_path(ns))}">Jobs of {e(ns)}</a> /</p>'
            f'<div class="title"><h1><code>{e(job.id)}</code></h1>{stage_badge(job.stage, "stage")}{cancel}</div>'
            f'<p id="message" class="message">{e(job.message or "")}</p>'
            f'<table class="details"><tbody>{table}</tbody></table>'
            '<h2>Log</h2><div id="log" class="log" aria-live="polite"></div>'
            '<p id="log-state" class="none">connecting…</p></main>'
        )
        attributes = (
            f' data-events="{e(job_path(ns, job.id, "/events"))}"'
            f' data-status="{e(job_path(ns, job.id, "/status"))}"'
        )
        return page(200, f"Job {job.id} · Local HF Jobs", body, script=True, attributes=attributes)

    async def job_status(self, request: Request) -> Response:
        record = self.job_or_refusal(request)
        if isinstance(record, Response):
            return record if record.status_code != 401 else secured(JSONResponse({"error": "Log in"}, 401))
        return secured(JSONResponse(status_json(self.info(request, record))))

    async def job_events(self, request: Request) -> Response:
        """The job's log as SSE (the API's stream, from its last ``PAGE_LOG_TAIL`` lines), then
        ``event: end`` once the job is over: the page closes its EventSource instead of reconnecting (and
        replaying the log)."""
        record = self.job_or_refusal(request)
        if isinstance(record, Response):
            return record if record.status_code != 401 else secured(JSONResponse({"error": "Log in"}, 401))

        async def events() -> AsyncIterator[bytes]:
            async for chunk in self.follow_log(record, PAGE_LOG_TAIL):
                yield chunk
            # A long retry: were the page to miss "end", it would not replay the log at once.
            stage = json.dumps({"stage": record.stage.value})
            yield f"retry: {END_RETRY_MS}\nevent: end\ndata: {stage}\n\n".encode()

        response = StreamingResponse(events(), media_type="text/event-stream")
        response.headers["X-Accel-Buffering"] = "no"
        return secured(response)

    async def job_cancel(self, request: Request) -> Response:
        """Cancel from the page: the API's ``runner.cancel``, then back to the job page (303).
        A session must send the page's CSRF field; a bearer token (no browser sends one) need not."""
        record = self.job_or_refusal(request)
        if isinstance(record, Response):
            return record
        fields = await self.form(request)
        if self.csrf_refused(request, fields, record.id):
            body = (
                f"{masthead(record.namespace)}<main><h1>Cancel refused</h1><p>The form did not come "
                "from this job's page (no or a wrong CSRF field). Open the job page and use its "
                f'button.</p><p><a href="{e(job_path(record.namespace, record.id))}">Back to the job'
                "</a></p></main>"
            )
            return page(403, "Cancel refused · Local HF Jobs", body)
        await self.runner.cancel(record)
        return secured(RedirectResponse(job_path(record.namespace, record.id), status_code=303))

    async def scheduled_action(self, request: Request) -> Response:
        """A scheduled job's button on the list (``suspend``, ``resume``, ``run``): what the API's route
        does (the same :class:`ScheduledActions` function), then back to the list (303) with its outcome
        there, a refusal (409) included. CSRF as for cancel."""
        ns, scheduled_id = request.path_params["namespace"], request.path_params["scheduled_job_id"]
        action = request.path_params["action"]
        if not self.allowed(request):
            return self.ask_login(request, target=list_path(self.namespace))
        record = self.scheduled.store.get(ns, scheduled_id) if self.scheduled is not None else None
        if record is None or action not in SCHEDULED_BUTTONS:
            return self.not_found(f"No scheduled job {scheduled_id} in namespace {ns} on this server.")
        assert self.scheduled is not None
        fields = await self.form(request)
        if self.csrf_refused(request, fields, csrf_subject(record.id)):
            body = (
                f"{masthead(ns)}<main><h1>{e(SCHEDULED_BUTTONS[action])} refused</h1><p>The form did not "
                "come from this server's list of jobs (no or a wrong CSRF field). Open the list and use its "
                f'buttons.</p><p><a href="{e(list_path(ns))}">Back to the jobs of {e(ns)}</a></p></main>'
            )
            return page(403, f"{SCHEDULED_BUTTONS[action]} refused · Local HF Jobs", body)
        try:
            if action == "run":
                job = self.scheduled.trigger(record)
                outcome = f"Scheduled job {record.id}: run {job.id} started."
            elif action == "suspend":
                self.scheduled.suspend(record)
                outcome = f"Scheduled job {record.id} suspended: no runs until it is resumed."
            else:
                self.scheduled.resume(record)
                outcome = f"Scheduled job {record.id} resumed."
        except SpecError as exc:
            problem = f"{SCHEDULED_BUTTONS[action]} refused ({exc.status}): {exc}"
            sid = self.session(request)
            if sid is None:  # a script with the bearer token: no session to carry the message
                body = f'{masthead(ns)}<main><p class="error" role="alert">{e(problem)}</p></main>'
                return page(exc.status, f"{SCHEDULED_BUTTONS[action]} refused · Local HF Jobs", body)
            self.notify(sid, problem, problem=True)
        else:
            if (sid := self.session(request)) is not None:
                self.notify(sid, outcome)
        return secured(RedirectResponse(list_path(ns), status_code=303))
