"""Answers that are errors, and what to do about them: body limits, JSON read safely, one provider
exception per status, redirects never followed, and when and how long to retry.
"""

from __future__ import annotations

import email.utils
import json
import random
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC
from typing import Any
from urllib.parse import urlsplit

from airflow_provider_hfjobs.exceptions import (
    HfJobsAPIError,
    HfJobsAuthError,
    HfJobsBadRequestError,
    HfJobsError,
    HfJobsInputError,
    HfJobsNotFoundError,
    HfJobsPermissionError,
    HfJobsRateLimitError,
    HfJobsServerError,
)

# Most bytes read of one answer body; a server (or a proxy or captive portal in front of it) sending more is
# not the Jobs API, and must not fill a worker's or the shared triggerer's memory. Read at call time, so a
# test can lower them.
#: An error answer: its message is in its first few hundred characters, the rest is cut off unread.
MAX_ERROR_BODY_BYTES = 64 << 10
#: A JSON answer (a job, whoami, the hardware list): a job is about 2 KB. More is an error.
MAX_JSON_BODY_BYTES = 8 << 20
#: One page of a job list: thousands of jobs. More is an error.
MAX_LIST_PAGE_BYTES = 64 << 20


def server_error_text(body: bytes | str | None, headers: Mapping[str, str] | None = None) -> str | None:
    """The server's own explanation: ``X-Error-Message`` and the JSON body's ``error``, as the official
    client reads them (``{"error": str | [str]}``, ``error_description``, ``errors[].message``, raw text)."""
    parts: list[str] = []
    header_message = _header(headers, "x-error-message")
    if header_message:
        parts.append(header_message)
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else (body or "")
    text = text.strip()
    if text:
        try:
            payload = loads_json(text)
        except JSONTooDeepError:
            payload = False  # no answer of the Jobs API: not quoted either
        except ValueError:
            payload = None
        if isinstance(payload, dict):
            error = payload.get("error")
            if isinstance(error, list):
                parts.extend(str(item) for item in error)
            elif error:
                parts.append(str(error))
            if payload.get("error_description"):
                parts.append(str(payload["error_description"]))
            errors = payload.get("errors")
            for item in errors if isinstance(errors, list) else ():
                if isinstance(item, dict) and item.get("message"):
                    parts.append(str(item["message"]))
        elif payload is None and not text.lstrip().startswith("<"):
            parts.append(text)
    unique = list(
        dict.fromkeys(part.strip()[:MAX_SERVER_TEXT_CHARS] for part in parts if part and part.strip())
    )
    return " ".join(unique).replace("\n", " ") or None


#: Longest piece of the server's own text quoted in an error message (each of header, ``error`` ...).
MAX_SERVER_TEXT_CHARS = 300
#: Deepest JSON nesting read from the server. A Jobs API answer is a few levels deep; a deeper one is
#: refused, since parsing or printing it could exhaust Python's recursion limit (a ``RecursionError`` out
#: of a hook, or out of the code that shows its message).
MAX_JSON_DEPTH = 64


class JSONTooDeepError(ValueError):
    """JSON nested deeper than :data:`MAX_JSON_DEPTH`; ``parsed=False``: so deep that the parser itself
    gave up (whether the rest was even JSON is unknown)."""

    def __init__(self, *, parsed: bool) -> None:
        super().__init__(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
        self.parsed = parsed


def loads_json(text: str | bytes) -> Any:
    """``json.loads`` for server answers: ``ValueError`` for anything that is not JSON, and
    :class:`JSONTooDeepError` (never ``RecursionError``) for JSON nested too deeply to handle safely."""
    try:
        data = json.loads(text)
    except RecursionError:
        raise JSONTooDeepError(parsed=False) from None
    if isinstance(data, (dict, list)):
        brackets = (
            text.count("[") + text.count("{")
            if isinstance(text, str)
            else text.count(b"[") + text.count(b"{")
        )
        if brackets > MAX_JSON_DEPTH:  # only a body with that many brackets can be that deep
            _check_depth(data)
    return data


def _check_depth(data: dict[str, Any] | list[Any]) -> None:
    """Walk ``data`` without recursion; :class:`JSONTooDeepError` past :data:`MAX_JSON_DEPTH` levels."""
    stack: list[tuple[Iterable[Any], int]] = [(data.values() if isinstance(data, dict) else data, 1)]
    while stack:
        children, depth = stack.pop()
        for child in children:
            if isinstance(child, (dict, list)):
                if depth >= MAX_JSON_DEPTH:
                    raise JSONTooDeepError(parsed=True)
                stack.append((child.values() if isinstance(child, dict) else child, depth + 1))


def body_limit(status_code: int, *, listing: bool = False) -> int:
    """How many bytes of an answer's body to read: see :data:`MAX_ERROR_BODY_BYTES` and the others. A
    transport reads at most this plus one byte, so that :func:`json_answer` can tell a body that was cut."""
    if is_error_status(status_code):
        return MAX_ERROR_BODY_BYTES
    return MAX_LIST_PAGE_BYTES if listing else MAX_JSON_BODY_BYTES


def json_answer(status_code: int, content: bytes, *, action: str, listing: bool = False) -> Any:
    """The JSON of a 2xx answer read under :func:`body_limit`; anything else (a proxy's HTML page, a cut
    or over-long body) is one :class:`HfJobsAPIError`, on the sync and async paths alike."""
    limit = body_limit(status_code, listing=listing)
    if len(content) > limit:
        raise HfJobsAPIError(
            f"Could not {action}: the server answered HTTP {status_code} with more than {_amount(limit)}, "
            "more than the Jobs API ever sends; not read.",
            status_code=status_code,
        )
    try:
        return loads_json(content)
    except ValueError as exc:
        deep = isinstance(exc, JSONTooDeepError) and exc.parsed
        what = f"with {exc}, which no Jobs API answer is" if deep else "without JSON"
        raise HfJobsAPIError(
            f"Could not {action}: the server answered HTTP {status_code} {what}.", status_code=status_code
        ) from None


def _amount(size: int) -> str:
    for unit, shift in (("MiB", 20), ("KiB", 10)):
        if size >= 1 << shift and size % (1 << shift) == 0:
            return f"{size >> shift} {unit}"
    return f"{size} bytes"


def error_for_response(
    status_code: int,
    body: bytes | str | None,
    headers: Mapping[str, str] | None,
    *,
    action: str,
    namespace: str | None = None,
    job_id: str | None = None,
    retried: bool = True,
) -> HfJobsAPIError:
    """One provider exception, with a one-line message that says what to change (``retried=False``: the
    request was not retried, and the message does not claim it was).

    ``action`` says what was attempted ("create a job", "inspect job X"); the message never contains the
    token (it is only ever in the ``Authorization`` header, which is not read here).
    """
    server = server_error_text(body, headers)
    request_id = _header(headers, "x-request-id") or _header(headers, "x-amzn-trace-id")
    detail = f" Server said: {server}." if server else ""
    ref = f" (request id {request_id})" if request_id else ""
    after = ", still after retries" if retried else ""
    cls: type[HfJobsAPIError]
    if is_redirect(status_code):
        return HfJobsAPIError(redirect_message(status_code, headers, action), status_code=status_code)
    if status_code == 401:
        cls = HfJobsAuthError
        text = (
            f"Could not {action}: invalid token (HTTP 401). Set a valid Hugging Face token as the password of "
            "the Airflow connection (or HF_TOKEN)."
        )
    elif status_code == 403:
        cls = HfJobsPermissionError
        where = f" to namespace {namespace!r}" if namespace else ""
        text = (
            f"Could not {action}: the token has no access{where} (HTTP 403). Use a token with write access "
            "to that user or organization, and check it has Jobs access and credits."
        )
    elif status_code == 404:
        cls = HfJobsNotFoundError
        if job_id:
            kind = "scheduled job" if "scheduled job" in action else "job"  # the scheduled routes say so
            text = (
                f"Could not {action}: {kind} {job_id} not found in namespace {namespace!r} (HTTP 404). Check "
                f"the {kind} id and the namespace it was created in."
            )
        else:
            text = f"Could not {action}: not found (HTTP 404). Check the namespace {namespace!r} and the endpoint."
    elif status_code in (400, 422):
        cls = HfJobsBadRequestError
        text = f"Could not {action}: the server rejected the request (HTTP {status_code})."
    elif status_code == 429:
        cls = HfJobsRateLimitError
        text = f"Could not {action}: rate limited by the Hub (HTTP 429){after}."
    elif status_code >= 500:
        cls = HfJobsServerError
        text = f"Could not {action}: the Hub failed (HTTP {status_code}){after}."
    else:
        cls = HfJobsAPIError
        text = f"Could not {action}: HTTP {status_code}."
    return cls(
        f"{text}{detail}{ref}",
        status_code=status_code,
        server_message=server,
        request_id=request_id,
        retry_after=retry_after_seconds(headers),
    )


def is_redirect(status_code: int) -> bool:
    return 300 <= status_code < 400


def is_error_status(status_code: int) -> bool:
    """An answer both hooks turn into an error: a 4xx or 5xx, and a redirect, which no hook follows."""
    return status_code >= 300


def redirect_message(status_code: int, headers: Mapping[str, str] | None, action: str) -> str:
    """The one redirect rule, for both hooks and every route: never followed, to another origin or not, so
    that neither the token nor a body holding secret values is ever sent anywhere but the endpoint (the
    Jobs API does not redirect; a proxy or a moved endpoint does). Only the target's origin is shown."""
    location = _header(headers, "location")
    origin = None
    if location:
        try:
            parts = urlsplit(location)
            origin = f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else None
        except ValueError:
            origin = None
    where = f" to {origin[:200]}" if origin else ""
    fix = f" (perhaps {origin[:200]})" if origin else ""
    return (
        f"Could not {action}: the endpoint answered with a redirect (HTTP {status_code}){where}, which is not "
        "followed so that neither the token nor the request's body (which may hold secret values) goes "
        f"anywhere else. Set the connection's host to the address that answers itself{fix}."
    )


def _header(headers: Mapping[str, str] | None, name: str) -> str | None:
    if not headers:
        return None
    value = headers.get(name)
    if value is None:
        for key, candidate in headers.items():
            if key.lower() == name:
                return candidate
    return value


def check_http_credentials(endpoint: str, token: str) -> None:
    """An endpoint and a token that HTTP can carry, checked where a hook reads them: a bad port, an
    unclosed IPv6 host or a token with a character no header holds would otherwise fail deep in a
    transport, as a bare ``ValueError`` or ``UnicodeEncodeError``. The token is never quoted."""
    try:
        parts = urlsplit(endpoint)
        parts.port  # noqa: B018 - parsing it is the check
    except ValueError as exc:
        raise HfJobsInputError(
            f"the Hub endpoint {endpoint!r} is not a valid URL ({exc}): fix the connection's host."
        ) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise HfJobsInputError(
            f"the Hub endpoint {endpoint!r} is not an http(s) URL with a host: fix the connection's host."
        )
    if not (token.isascii() and token.isprintable()):
        raise HfJobsInputError(
            "the Hugging Face token contains a character an HTTP header cannot carry (a non-ASCII or control "
            "character, often from copying it): paste the token again."
        )


# ------------------------------------------------------------------------------------------------ retries
RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
#: Statuses after which a create certainly did not happen, so re-sending it cannot start a second job.
CREATE_NOT_APPLIED_STATUS = frozenset({408, 429})
_RATELIMIT_RE = re.compile(r"\"?(?P<name>[\w-]+)\"?\s*;\s*r\s*=\s*(?P<r>\d+)\s*;\s*t\s*=\s*(?P<t>\d+)")


def retry_after_seconds(headers: Mapping[str, str] | None, *, now: float | None = None) -> float | None:
    """How long the server asked us to wait: ``Retry-After`` (seconds or HTTP date) or the IETF ``RateLimit``
    header's reset ``t=`` when nothing is left (``r=0``)."""
    value = _header(headers, "retry-after")
    if value:
        value = value.strip()
        if value.isascii() and value.isdigit():  # "²".isdigit() too, and float("²") raises
            return float(value)
        try:
            moment = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            moment = None
        if moment is not None:
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            return max(0.0, moment.timestamp() - (time.time() if now is None else now))
    ratelimit = _header(headers, "ratelimit")
    if ratelimit:
        match = _RATELIMIT_RE.search(ratelimit)
        if match and int(match.group("r")) == 0:
            return float(match.group("t"))
    return None


@dataclass(frozen=True)
class RetryPolicy:
    """When to try a request again and how long to wait: the one retry rule of the provider.

    Retries connection errors and 408/429/5xx, with full-jitter exponential backoff, honouring
    ``Retry-After``/``RateLimit`` (plus a little jitter), and gives up after ``max_retries`` or when the
    waits would exceed ``max_total_wait`` seconds.
    """

    max_retries: int = 5
    base_delay: float = 1.0
    max_delay: float = 30.0
    max_total_wait: float = 300.0

    def __post_init__(self) -> None:
        if self.max_retries < 0 or self.base_delay < 0 or self.max_delay < 0 or self.max_total_wait < 0:
            raise HfJobsInputError("retry settings must be non-negative numbers.")

    def delay(
        self,
        attempt: int,
        *,
        status_code: int | None = None,
        headers: Mapping[str, str] | None = None,
        waited: float = 0.0,
        rng: random.Random | None = None,
    ) -> float | None:
        """Seconds to wait before retry number ``attempt`` (1-based), or ``None`` to give up.

        ``status_code`` is ``None`` for a transport error (connection refused, reset, timeout).
        """
        if status_code is not None and status_code not in RETRYABLE_STATUS:
            return None
        if attempt > self.max_retries:
            return None
        draw = (rng or random).random()
        backoff = draw * min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        asked = retry_after_seconds(headers)
        if asked is not None:
            backoff = asked + draw * min(1.0, self.base_delay)
        if waited + backoff > self.max_total_wait:
            return None
        return backoff


class RetryAttempts:
    """The attempts of one request under a :class:`RetryPolicy`: each failure either gives the seconds to
    wait before the next attempt or raises the failure. One helper for every sync and async caller."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        self.failures = 0
        self.waited = 0.0

    def reset(self) -> None:
        """Progress was made: the next failure is a first failure again."""
        self.failures, self.waited = 0, 0.0

    def after(
        self, failure: Exception, *, status_code: int | None = None, headers: Mapping[str, str] | None = None
    ) -> float:
        self.failures += 1
        delay = self.policy.delay(self.failures, status_code=status_code, headers=headers, waited=self.waited)
        if delay is None:
            raise failure
        asked = getattr(failure, "retry_after", None)
        if headers is None and asked is not None:
            delay = max(delay, asked)
            if self.waited + delay > self.policy.max_total_wait:
                raise failure  # a Retry-After of days is no retry (a stream would sleep that long)
        self.waited += delay
        return delay


def outcome_unknown(error: HfJobsError) -> HfJobsError:
    """``error`` of a request that may have been done anyway (see :attr:`ApiCall.idempotent`), saying so."""
    note = " It may have happened anyway: check before trying again."
    if isinstance(error, HfJobsAPIError):
        return type(error)(
            f"{error}{note}", status_code=error.status_code, server_message=error.server_message,
            request_id=error.request_id, retry_after=error.retry_after,
        )  # fmt: skip
    return type(error)(f"{error}{note}")
