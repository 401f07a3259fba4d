"""Where to go after a form, and the one-line message shown there.

``safe_next``: a ``next`` field is followed only to a path of this console (``/...``, never
``//host`` or a URL with a scheme), else to ``/``. ``with_flash`` adds the message to that path
as the query parameter ``flash``, signed with the console's key and good for
``FLASH_MAX_AGE_S``: a link someone else made cannot put words on the page.
``flash_message(request)`` reads it (templates call it; ``base.html`` shows it).
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from fastapi import Request
from itsdangerous import BadSignature

from workers.settings import WebSettings
from workers.web.auth import signer
from workers.web.deps import settings

FLASH_PARAM = "flash"
FLASH_SALT = "tradefleet.console.flash"
FLASH_MAX_AGE_S = 300
MAX_FLASH = 500


def safe_next(value: str | None) -> str:
    """``value`` if it is a path on this console, else ``/``."""
    if not value or len(value) > 2000 or not value.startswith("/"):
        return "/"
    if value.startswith(("//", "/\\")) or any(ord(c) < 32 or c == "\\" for c in value):
        return "/"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return "/"
    return value


def with_flash(web: WebSettings, path: str, message: str) -> str:
    """``path`` (already safe) with the signed ``message`` as its ``flash`` parameter."""
    parts = urlsplit(path)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != FLASH_PARAM]
    token = str(signer(web, FLASH_SALT).dumps(message[:MAX_FLASH]))
    query.append((FLASH_PARAM, token))
    return urlunsplit(("", "", parts.path, urlencode(query), ""))


def flash_message(request: Request) -> str | None:
    """The message of this request's ``flash`` parameter, if it is ours and recent."""
    token = request.query_params.get(FLASH_PARAM)
    if not token:
        return None
    try:
        message = signer(settings(request).web, FLASH_SALT).loads(token, max_age=FLASH_MAX_AGE_S)
    except BadSignature:
        return None
    return message if isinstance(message, str) else None
