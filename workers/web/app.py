"""``create_app(settings)``: the console's ASGI app; connections are made by its lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from workers.runtime import Runtime
from workers.settings import Settings
from workers.web import metrics
from workers.web.deps import STATIC_DIR


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        rt = Runtime(settings)
        app.state.runtime = rt
        try:
            yield
        finally:
            rt.engine.dispose()
            rt.redis.close()

    app = FastAPI(title="tradefleet", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.settings = settings
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.include_router(metrics.router)
    return app
