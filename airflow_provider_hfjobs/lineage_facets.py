"""The OpenLineage run facet of a Hugging Face job: imported only by the OpenLineage methods of the
operators (:mod:`.operators.lineage`), so that the provider works without ``openlineage-python``."""

from __future__ import annotations

from typing import Any

from attrs import Factory, define
from openlineage.client.facet_v2 import RunFacet


@define
class HfJobRunFacet(RunFacet):
    """The job a task ran: where it is, what it ran on, how it ended and what it cost (camelCase, as the
    OpenLineage facets are)."""

    jobId: str
    jobUrl: str
    namespace: str
    image: str
    flavor: str | None = None
    stage: str | None = None
    billedSeconds: float | None = None
    priceUsdPerHour: float | None = None
    costUsd: float | None = None
    metrics: dict[str, Any] = Factory(dict)
    checks: dict[str, Any] = Factory(dict)
