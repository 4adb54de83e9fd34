"""One redirect rule for both hooks (issue 21, item 2), against hostile servers on 127.0.0.1: a redirect is
never followed, to another origin or the same one, so neither the token nor a body holding secret values
is ever sent anywhere but the endpoint; the error text is the same sync and async, names the target's
origin and says what to change, and holds no secret."""

from __future__ import annotations

import asyncio
import json

import pytest

from airflow_provider_hfjobs.exceptions import HfJobsAPIError
from airflow_provider_hfjobs.hooks.hfjobs import HfJobsAsyncHook, HfJobsHook, _recent_credentials
from airflow_provider_hfjobs.jobs import RetryPolicy
from tests.integration.conftest import set_connection
from tests.integration.test_hook_deadlines import BOUND, JOB_ID, NS, TOKEN, Handler, Server, job_json

pytestmark = pytest.mark.integration
SECRET = "sk-redirect-canary-9f1e"
NO_RETRY = RetryPolicy(max_retries=0)


def answer_job(handler: Handler) -> None:
    if handler.command == "POST" and handler.path.endswith(f"/api/jobs/{NS}"):
        handler.send(200, json.dumps(job_json("RUNNING")).encode(), (("Content-Type", "application/json"),))
    else:
        handler.send_job()


def hooks(monkeypatch: pytest.MonkeyPatch, url: str) -> tuple[HfJobsHook, HfJobsAsyncHook]:
    _recent_credentials.clear()
    set_connection(monkeypatch, "hf_redirect", url, TOKEN, namespace=NS)
    return (
        HfJobsHook("hf_redirect", retry_policy=NO_RETRY),
        HfJobsAsyncHook("hf_redirect", namespace=NS, retry_policy=NO_RETRY),
    )


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("where", ["another origin", "the same origin"])
def test_no_hook_follows_a_redirect_and_both_say_so_alike(
    status: int, where: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Server(answer_job) as elsewhere:

        def redirect(handler: Handler) -> None:
            base = elsewhere.url if where == "another origin" else handler.server.url
            handler.send(status, b"", (("Location", f"{base}{handler.path}"),))

        with Server(redirect) as endpoint:
            sync, async_ = hooks(monkeypatch, endpoint.url)
            with pytest.raises(HfJobsAPIError) as created:
                sync.run_job(image="python:3.12", command=["env"], secrets={"API_KEY": SECRET})
            with pytest.raises(HfJobsAPIError) as inspected:
                sync.inspect_job(JOB_ID)
            with pytest.raises(HfJobsAPIError) as streamed:
                list(sync.fetch_job_logs(JOB_ID))

            async def async_calls() -> tuple[str, str, str]:
                async with async_:
                    texts = []
                    for call in (
                        async_.inspect_job(JOB_ID),
                        async_.cancel_job(JOB_ID),
                    ):
                        with pytest.raises(HfJobsAPIError) as info:
                            await asyncio.wait_for(call, BOUND)
                        texts.append(str(info.value))
                    with pytest.raises(HfJobsAPIError) as info:
                        await asyncio.wait_for(_drain(async_.iter_job_log_batches(JOB_ID)), BOUND)
                    texts.append(str(info.value))
                    return texts[0], texts[1], texts[2]

            async_inspected, async_cancelled, async_streamed = asyncio.run(async_calls())
            sync.close()
        origin = elsewhere.url if where == "another origin" else endpoint.url
        assert elsewhere.requests == []  # nothing, and so no body with the secret, reached the target
        assert endpoint.count("POST", f"/api/jobs/{NS}") == 1, endpoint.requests  # the create, sent once
        expected = (
            f"Could not inspect job {JOB_ID}: the endpoint answered with a redirect (HTTP {status}) to {origin}, "
            "which is not followed so that neither the token nor the request's body (which may hold secret "
            f"values) goes anywhere else. Set the connection's host to the address that answers itself (perhaps "
            f"{origin})."
        )
        assert str(inspected.value) == async_inspected == expected  # one rule, one text, sync and async
        assert f"(HTTP {status}) to {origin}" in str(created.value) and "create" in str(created.value)
        for text in (str(streamed.value), async_streamed, async_cancelled):
            assert f"(HTTP {status}) to {origin}" in text
        for text in (str(created.value), str(inspected.value), async_cancelled, async_streamed):
            assert SECRET not in text and TOKEN not in text


async def _drain(batches) -> None:
    async for _ in batches:
        pass
