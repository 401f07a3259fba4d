"""``/metrics``: the fleet's Prometheus metrics, for a scraper holding the metrics token.

Served only with ``Authorization: Bearer <TRADEFLEET_METRICS_TOKEN>`` (compared in constant
time); a wrong or missing token is answered 401, and with no token set the route answers 404:
it is not served at all. The console's login plays no part. The format follows the scraper's
``Accept`` (OpenMetrics when asked, else Prometheus' text format 0.0.4).

Each app has its own ``CollectorRegistry`` (never the process-wide one) holding one collector
that reads, at each scrape, the counters every worker keeps in Redis (one pipeline,
``workers.metrics``) and the sessions' and accounts' gauges (``workers.web.fleet_gauges``: the
console's read models, five SQL statements and five Redis round trips whatever the fleet's size).
"""

from __future__ import annotations

import hmac
import threading
from collections.abc import Iterator

from fastapi import APIRouter, FastAPI, HTTPException, Request, Response
from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric as Family
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from workers.metrics.counters import read_all
from workers.metrics.exposition import families
from workers.runtime import Runtime
from workers.settings import Settings
from workers.web.fleet_gauges import fleet_families

router = APIRouter()
_registries = threading.Lock()


class FleetCollector(Collector):
    """Everything ``/metrics`` shows, read from the app's runtime at each scrape."""

    def __init__(self, app: FastAPI) -> None:
        self._app = app

    def collect(self) -> Iterator[Family]:
        rt: Runtime = self._app.state.runtime
        yield from families(read_all(rt.redis))
        yield from fleet_families(rt)


def registry_of(app: FastAPI) -> CollectorRegistry:
    """The app's own registry with its ``FleetCollector`` (made at the first scrape)."""
    with _registries:
        registry: CollectorRegistry | None = getattr(app.state, "metrics_registry", None)
        if registry is None:
            registry = CollectorRegistry(auto_describe=False)
            registry.register(FleetCollector(app))
            app.state.metrics_registry = registry
        return registry


def check_token(settings: Settings, authorization: str | None) -> None:
    """404 without a configured token; 401 unless ``authorization`` is ``Bearer <token>``."""
    token = settings.web.metrics_token.get_secret_value()
    if not token:
        raise HTTPException(status_code=404)
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        given.strip().encode(), token.encode()
    ):
        raise HTTPException(status_code=401, headers={"WWW-Authenticate": "Bearer"})


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request) -> Response:
    settings: Settings = request.app.state.settings
    check_token(settings, request.headers.get("authorization"))
    encode, content_type = choose_encoder(request.headers.get("accept", ""))
    body = encode(registry_of(request.app))
    return Response(content=body, headers={"Content-Type": content_type})
