"""``create_app(settings)``: the console's ASGI app; connections are made by its lifespan.

Every route runs ``check_csrf`` first (a POST other than the login's needs a login and its
CSRF token); errors are answered by ``workers.web.errors``; templates may call
``csrf_token_of(request)`` and ``flash_message(request)``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from celery import Celery
from fastapi import Depends, FastAPI
from fastapi.staticfiles import StaticFiles

from workers.runtime import Runtime
from workers.settings import Settings
from workers.web import actions, login, metrics, pages
from workers.web.auth import check_csrf, csrf_token
from workers.web.deps import STATIC_DIR, TEMPLATES
from workers.web.errors import install_error_handlers
from workers.web.flash import flash_message


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        rt = Runtime(settings)
        app.state.runtime = rt
        try:
            yield
        finally:
            celery: Celery | None = getattr(app.state, "celery", None)
            if celery is not None:
                celery.close()
            rt.engine.dispose()
            rt.redis.close()

    app = FastAPI(
        title="tradefleet",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        dependencies=[Depends(check_csrf)],
    )
    app.state.settings = settings
    TEMPLATES.env.globals["csrf_token_of"] = csrf_token
    TEMPLATES.env.globals["flash_message"] = flash_message
    install_error_handlers(app)
    app.include_router(login.router)
    app.include_router(actions.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.include_router(pages.router)
    app.include_router(metrics.router)
    return app
