"""Provider exceptions.

They derive from plain ``Exception`` (not ``AirflowException``) so that the protocol core and the local
server never import Airflow; Airflow fails a task on any exception alike.
"""

from __future__ import annotations


class HfJobsError(Exception):
    """Base class: anything the HF Jobs API or this provider refused."""


class HfJobsInputError(HfJobsError, ValueError):
    """Bad input, caught before any request is sent. The message names the field and the fix."""


class HfJobsConnectionError(HfJobsError):
    """The Jobs API could not be reached (after retries)."""


class HfJobsTLSError(HfJobsConnectionError):
    """The server's TLS certificate did not verify against the CA setting (never retried: no retry mends
    it). The message names the host and the setting to change."""


class HfJobsAPIError(HfJobsError):
    """The Jobs API answered with an HTTP error.

    ``str(error)`` is one line: what failed, the server's own ``error`` text and the request id.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        server_message: str | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.server_message = server_message
        self.request_id = request_id
        self.retry_after = retry_after


class HfJobsAuthError(HfJobsAPIError):
    """401: the token is missing, invalid or expired."""


class HfJobsPermissionError(HfJobsAPIError):
    """403: the token may not use this namespace (or the namespace has no Jobs access or credits)."""


class HfJobsNotFoundError(HfJobsAPIError):
    """404: no such job in this namespace (a wrong namespace also gives 404)."""


class HfJobsBadRequestError(HfJobsAPIError):
    """400/422: the server rejected the request body (an unknown flavor, for example)."""


class HfJobsConcurrencyError(HfJobsAPIError):
    """409 on triggering a scheduled job: a run of it is still active and it does not allow concurrent
    runs (``concurrency`` off). Nothing was started."""


class HfJobsRateLimitError(HfJobsAPIError):
    """429: rate limited, still so after retries."""


class HfJobsServerError(HfJobsAPIError):
    """5xx: the server failed, still so after retries."""


class HfJobFailedError(HfJobsError):
    """The job ended in ERROR, CANCELED or DELETED (or could no longer be watched).

    The message carries the stage, the server's message, the job URL and the job's last log lines.
    """

    def __init__(self, message: str, *, job_id: str, stage: str | None, job_url: str) -> None:
        super().__init__(message)
        self.job_id = job_id
        self.stage = stage
        self.job_url = job_url
