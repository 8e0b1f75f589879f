"""The dashboard's routes (Starlette): the page, its files, the login form and the data API.

Access follows :mod:`gravix.dashboard.auth`. A bad parameter is a 400, a damaged data file
a 503 with a hint, and anything unexpected a 500 whose body says only that; no answer ever
carries a traceback. Data routes are plain functions, so Starlette runs them in its thread
pool and ``/live`` answers while a long read goes on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs

import msgspec
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from gravix.dashboard.api import Data
from gravix.dashboard.assets import Asset, Assets
from gravix.dashboard.auth import COOKIE, SESSION_SECONDS, Gate, host_name, is_loopback
from gravix.dashboard.params import parse_query
from gravix.errors import ConfigError, GravixError, QueryError, StoreError
from gravix.query.source import Root

log = logging.getLogger("gravix.dashboard")
_ENCODER = msgspec.json.Encoder()
# Every byte the page loads comes from this server; plotly needs inline styles only.
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; connect-src 'self'; font-src 'self'; object-src 'none'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
_SECURITY = {
    "Content-Security-Policy": _CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
ROUTES = ("services", "series", "endpoints", "events", "heatmap")


def json_response(body: Any, status: int = 200, **headers: str) -> Response:
    return Response(
        _ENCODER.encode(body),
        status_code=status,
        media_type="application/json",
        headers={"Cache-Control": "no-store", **_SECURITY, **headers},
    )


def error(status: int, message: str, hint: str | None = None) -> Response:
    body: dict[str, Any] = {"error": message, "code": status}
    if hint:
        body["hint"] = hint
    return json_response(body, status)


class Dashboard:
    """The state behind the routes: the data root's answers, the gate and the files."""

    def __init__(
        self,
        root: Root,
        keys: tuple[str, ...],
        *,
        ingest_url: str,
        now: Callable[[], datetime] | None = None,
        cache_size: int = 64,
    ) -> None:
        self.data = Data(root, cache_size=cache_size)
        self.gate = Gate(keys)
        self.assets = Assets(ingest_url=ingest_url, auth=bool(keys))
        self.now = now
        self.check_host = not keys  # open: refuse pages asked for under a foreign name

    def allowed(self, request: Request) -> bool:
        return self.gate.allows(request.headers.get("x-api-key"), request.cookies.get(COOKIE))

    def foreign_host(self, request: Request) -> bool:
        """An open dashboard answers only to loopback names, so a web page that rebinds
        its own name to 127.0.0.1 cannot read it."""
        server = request.scope.get("server") or ("", 0)
        if not self.check_host or not is_loopback(str(server[0])):
            return False
        return not is_loopback(host_name(request.headers.get("host", "127.0.0.1")))

    # --- routes -------------------------------------------------------------------------------

    def live(self, request: Request) -> Response:
        return json_response({"status": "ok"})

    def page(self, request: Request) -> Response:
        if self.foreign_host(request):
            return Response("unknown host name", 403, media_type="text/plain")
        if not self.allowed(request):
            here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return self._login(status=401, next_url=here)
        return self._asset(request, self.assets.index, cache="no-cache")

    def static(self, request: Request) -> Response:
        if not self.allowed(request) or self.foreign_host(request):
            return Response("log in first", 401, media_type="text/plain")
        asset = self.assets.get(request.path_params["name"])
        if asset is None:
            return Response("not found", 404, media_type="text/plain")
        return self._asset(request, asset, cache="no-cache")

    async def login(self, request: Request) -> Response:
        if request.method == "GET":
            return self._login(status=200)
        body = await request.body()
        if len(body) > 4096:
            return self._login(status=413, message="the form is too large")
        fields = parse_qs(body.decode("utf-8", "replace"))
        key = (fields.get("key") or [""])[0].strip()
        target = _local((fields.get("next") or ["/"])[0])
        if self.gate.open:
            return RedirectResponse(target, status_code=303)
        if not self.gate.key_ok(key):
            log.warning("dashboard login refused (wrong key) from %s", _client(request))
            await asyncio.sleep(0.2)  # a guess costs time; keys are long random strings anyway
            return self._login(status=401, message="That key is not valid.", next_url=target)
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            COOKIE,
            self.gate.new_session(),
            max_age=SESSION_SECONDS,
            httponly=True,
            samesite="strict",
            path="/",
        )
        return response

    def logout(self, request: Request) -> Response:
        response = RedirectResponse("/", status_code=303)
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
        return response

    def api(self, request: Request) -> Response:
        if self.foreign_host(request):
            return error(403, "unknown host name")
        if not self.allowed(request):
            return error(401, "missing or invalid X-API-Key (or log in on the page)")
        name = request.path_params["name"]
        if name not in ROUTES:
            return error(404, f"no route /api/v1/{name[:40]}", hint=f"routes: {', '.join(ROUTES)}")
        try:
            return json_response(self._answer(name, request))
        except ConfigError as exc:
            return error(400, exc.message, exc.hint)
        except (QueryError, StoreError) as exc:
            return error(503, exc.message, exc.hint)
        except GravixError as exc:
            return error(500, exc.message, exc.hint)
        except Exception:
            log.exception("the dashboard failed to answer %s", request.url.path)
            return error(500, "internal error: the dashboard's log has the details")

    def _answer(self, name: str, request: Request) -> dict[str, Any]:
        params = dict(request.query_params)
        if len(request.query_params.multi_items()) != len(params):
            raise ConfigError("a parameter is given twice")
        if name == "services":
            return self.data.services()
        query = parse_query(params, now=self.now() if self.now else None)
        answer: dict[str, Any] = getattr(self.data, name)(query)
        return answer

    # --- helpers ------------------------------------------------------------------------------

    def _login(self, *, status: int, message: str = "", next_url: str = "/") -> Response:
        return Response(
            self.assets.login_page(message, next_url),
            status,
            media_type="text/html; charset=utf-8",
            headers={"Cache-Control": "no-store", **_SECURITY},
        )

    def _asset(self, request: Request, asset: Asset, *, cache: str) -> Response:
        headers = {"ETag": asset.etag, "Cache-Control": cache, **_SECURITY}
        if request.headers.get("if-none-match") == asset.etag:
            return Response(status_code=304, headers=headers)
        if "gzip" in request.headers.get("accept-encoding", ""):
            headers.update({"Content-Encoding": "gzip", "Vary": "Accept-Encoding"})
            return Response(asset.gzipped, media_type=asset.media_type, headers=headers)
        return Response(asset.body, media_type=asset.media_type, headers=headers)


def _local(target: str) -> str:
    """Only a path on this server is a place to return to after logging in."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target[:2048]


def _client(request: Request) -> str:
    return request.client.host if request.client else "?"


async def _not_found(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    if request.url.path.startswith("/api/"):
        return error(status, "no such route" if status == 404 else "request refused")
    return Response("not found" if status == 404 else "refused", status, media_type="text/plain")


async def _internal(request: Request, exc: Exception) -> Response:
    log.error("the dashboard failed on %s: %r", request.url.path, exc)
    return error(500, "internal error: the dashboard's log has the details")


def create_app(
    *,
    root: Root,
    keys: tuple[str, ...] = (),
    ingest_url: str = "http://127.0.0.1:8090",
    now: Callable[[], datetime] | None = None,
    cache_size: int = 64,
) -> Starlette:
    """The dashboard as an ASGI application over the data root ``root``."""
    board = Dashboard(root, keys, ingest_url=ingest_url, now=now, cache_size=cache_size)
    routes = [
        Route("/live", board.live, methods=["GET", "HEAD"]),
        Route("/", board.page, methods=["GET", "HEAD"]),
        Route("/login", board.login, methods=["GET", "POST"]),
        Route("/logout", board.logout, methods=["POST"]),
        Route("/static/{name}", board.static, methods=["GET", "HEAD"]),
        Route("/api/v1/{name}", board.api, methods=["GET", "HEAD"]),
    ]
    return Starlette(
        routes=routes,
        exception_handlers={HTTPException: _not_found, Exception: _internal},
    )
