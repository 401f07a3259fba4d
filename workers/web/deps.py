"""What a request handler gets: the app's runtime (Redis, engine, brokers) and its templates."""

from __future__ import annotations

from pathlib import Path

from fastapi import Request
from fastapi.templating import Jinja2Templates

from workers.runtime import Runtime
from workers.settings import Settings

HERE = Path(__file__).parent
TEMPLATES = Jinja2Templates(directory=HERE / "templates")
STATIC_DIR = HERE / "static"


def runtime(request: Request) -> Runtime:
    """The console process's runtime, made by the app's lifespan."""
    rt: Runtime = request.app.state.runtime
    return rt


def settings(request: Request) -> Settings:
    found: Settings = request.app.state.settings
    return found
