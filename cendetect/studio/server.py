"""The studio's web server: a Starlette app over a :class:`~cendetect.studio.session.Studio`.

Safe by default:

- it binds 127.0.0.1 unless told otherwise; bound anywhere else, every request must carry the
  random token of the printed URL (``?token=``; the page then keeps it in a ``SameSite=Strict``
  HttpOnly cookie, and the API also takes an ``X-Cendetect-Token`` header);
- the ``Host`` header must name the server itself (loopback names or the bound host, with its
  port): a page of another site reached through DNS rebinding is refused;
- a mutating request (POST) must come from the studio's own page: its ``Origin`` must be the
  server's, or, without an ``Origin``, ``Sec-Fetch-Site`` must not say cross-site;
- files are served by their path relative to the opened folder, and a path with ``..``
  (plain or percent-encoded, which Starlette decodes before routing), an absolute path, or
  one that resolves outside the folder through a symbolic link is refused with 403 and logged.

Static files (``cendetect/studio/static``) ship inside the package: the page loads nothing from
anywhere else.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from cendetect.io.decode import ImageDecodeError
from cendetect.studio.export import ExportOptions, export
from cendetect.studio.session import PathRefused, Studio, StudioError
from cendetect.studio.state import summary

__all__ = ["create_app", "LOOPBACK", "new_token"]

log = logging.getLogger("cendetect.studio")

STATIC = Path(__file__).with_name("static")
LOOPBACK = ("127.0.0.1", "localhost", "::1")
COOKIE = "cendetect_token"


def new_token() -> str:
    return secrets.token_urlsafe(24)


def _host_names(bind: str, port: int) -> set[str]:
    names = {*LOOPBACK, bind}
    out = set()
    for n in names:
        h = f"[{n}]" if ":" in n else n
        out.add(f"{h}:{port}".lower())
        if port == 80:
            out.add(h.lower())
    return out


class Guard:
    """ASGI middleware: the Host, token and Origin checks of the module docstring."""

    def __init__(self, app: ASGIApp, settings: dict[str, Any]) -> None:
        self.app = app
        self.settings = settings  # bind, port (filled in once bound), token (None: not needed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        reason = self._refusal(request)
        if reason is not None:
            log.warning("refused %s %s: %s", request.method, request.url.path, reason)
            await JSONResponse({"error": reason}, status_code=403)(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _refusal(self, request: Request) -> str | None:
        s = self.settings
        host = request.headers.get("host", "").lower()
        if host not in _host_names(s["bind"], s["port"]):
            return f"Host {host!r} is not this server (DNS rebinding?)"
        token = s.get("token")
        if token is not None:
            given = (request.query_params.get("token") or request.cookies.get(COOKIE)
                     or request.headers.get("x-cendetect-token"))  # fmt: skip
            if not given or not secrets.compare_digest(given, token):
                return "missing or wrong token (use the URL the studio printed)"
        if request.method not in ("GET", "HEAD"):
            origin = request.headers.get("origin")
            if origin is not None:
                if origin.lower() not in {f"http://{h}" for h in _host_names(s["bind"], s["port"])}:
                    return f"cross-origin request from {origin!r}"
            elif request.headers.get("sec-fetch-site", "same-origin") not in (
                "same-origin",
                "none",
            ):
                return "cross-site request"
        return None


def _error(exc: Exception) -> JSONResponse:
    if isinstance(exc, PathRefused):
        log.warning("refused path: %s", exc)
        return JSONResponse({"error": str(exc)}, status_code=403)
    if isinstance(exc, ImageDecodeError):
        return JSONResponse({"error": str(exc)}, status_code=422)
    return JSONResponse({"error": str(exc)}, status_code=400)


def create_app(studio: Studio, settings: dict[str, Any]) -> Starlette:
    """The app; ``settings``: ``bind``, ``port``, ``token`` (None on loopback)."""

    def guarded(fn):  # noqa: ANN001, ANN202
        def endpoint(request: Request) -> Response:
            try:
                return fn(request)
            except (StudioError, ImageDecodeError) as exc:
                return _error(exc)
            except FileNotFoundError as exc:
                return JSONResponse({"error": f"not found: {exc.filename}"}, status_code=404)

        return endpoint

    async def body(request: Request) -> dict[str, Any]:
        try:
            data = json.loads(await request.body() or b"{}")
        except ValueError as exc:
            raise StudioError(f"the request body is not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise StudioError("the request body must be a JSON object")
        return data

    def posted(fn):  # noqa: ANN001, ANN202
        async def endpoint(request: Request) -> Response:
            try:
                data = await body(request)
                return await asyncio.to_thread(fn, data)
            except (StudioError, ImageDecodeError) as exc:
                return _error(exc)

        return endpoint

    def index(request: Request) -> Response:
        response = FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})
        token = request.query_params.get("token")
        if token and settings.get("token") and secrets.compare_digest(token, settings["token"]):
            response.set_cookie(COOKIE, token, httponly=True, samesite="strict")
        return response

    def state(request: Request) -> Response:
        return JSONResponse({
            "progress": studio.progress(), "classes": list(studio.class_names),
            "threshold": studio.threshold,
            "images": [summary(studio.records[n]) for n in studio.names],
            "seq": len(studio.changes),
        })  # fmt: skip

    async def events(request: Request) -> Response:
        """Server-sent events: ``progress`` twice a second, ``image`` for each changed image."""
        seq = int(request.query_params.get("seq", len(studio.changes)))

        async def stream():  # noqa: ANN202
            nonlocal seq
            yield "retry: 1000\n\n"
            while not await request.is_disconnected():
                changes = studio.changes
                if seq > len(changes):  # another folder was opened
                    seq = 0
                new, seq = changes[seq:], len(changes)
                for name in dict.fromkeys(new):
                    rec = studio.records.get(name)
                    if rec is not None:
                        yield f"event: image\ndata: {json.dumps(summary(rec))}\n\n"
                yield f"event: progress\ndata: {json.dumps({**studio.progress(), 'seq': seq})}\n\n"
                await asyncio.sleep(0.5)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store"})  # fmt: skip

    def name_of(request: Request) -> str:
        return request.path_params["name"]

    def image(request: Request) -> Response:
        name = name_of(request)
        studio.input_path(name)
        studio.prioritise(name)
        return JSONResponse(studio.image_info(name))

    def thumb(request: Request) -> Response:
        return FileResponse(studio.thumbnail(name_of(request)), media_type="image/jpeg")

    def view(request: Request) -> Response:
        return FileResponse(studio.view(name_of(request)), media_type="image/jpeg")

    def result(request: Request) -> Response:
        return Response(studio.result_jpeg(name_of(request)), media_type="image/jpeg",
                        headers={"Cache-Control": "no-store"})  # fmt: skip

    def dirs(request: Request) -> Response:
        """The sub-folders of a folder (for the page's folder picker; names only)."""
        base = Path(request.query_params.get("path") or Path.home()).expanduser()
        try:
            base = base.resolve()
            subs = sorted(
                p.name for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")
            )
        except OSError as exc:
            raise StudioError(f"{base}: cannot list: {exc.strerror or exc}") from exc
        return JSONResponse({"path": str(base), "parent": str(base.parent), "dirs": subs})

    def do_open(data: dict[str, Any]) -> Response:
        folder = data.get("folder")
        if not isinstance(folder, str) or not folder:
            raise StudioError("give the folder to open")
        studio.open(folder, data.get("output") or None)
        return JSONResponse(studio.progress())

    def do_run(data: dict[str, Any]) -> Response:
        studio.run()
        return JSONResponse(studio.progress())

    def do_cancel(data: dict[str, Any]) -> Response:
        studio.cancel()
        return JSONResponse(studio.progress())

    def do_threshold(data: dict[str, Any]) -> Response:
        value = data.get("value")
        if not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
            raise StudioError("the threshold must be a number in [0, 1)")
        studio.threshold = float(value)
        return JSONResponse({"threshold": studio.threshold})

    def do_edit(data: dict[str, Any]) -> Response:
        name, op = data.get("name"), data.get("op")
        if not isinstance(name, str) or not isinstance(op, str):
            raise StudioError("an edit needs the image's name and an op")
        studio.input_path(name)
        return JSONResponse(studio.edit(name, op, data))

    def do_export(data: dict[str, Any]) -> Response:
        if studio.root is None:
            raise StudioError("no folder is open")
        fields = {k: bool(data[k]) for k in ExportOptions.__dataclass_fields__ if k in data}
        return JSONResponse(export(studio, ExportOptions(**fields)))

    routes = [
        Route("/", guarded(index)),
        Route("/api/state", guarded(state)),
        Route("/api/events", events),
        Route("/api/dirs", guarded(dirs)),
        Route("/api/image/{name:path}", guarded(image)),
        Route("/api/thumb/{name:path}", guarded(thumb)),
        Route("/api/view/{name:path}", guarded(view)),
        Route("/api/result/{name:path}", guarded(result)),
        Route("/api/open", posted(do_open), methods=["POST"]),
        Route("/api/run", posted(do_run), methods=["POST"]),
        Route("/api/cancel", posted(do_cancel), methods=["POST"]),
        Route("/api/threshold", posted(do_threshold), methods=["POST"]),
        Route("/api/edit", posted(do_edit), methods=["POST"]),
        Route("/api/export", posted(do_export), methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        # on shutdown: the picture being detected is finished and its sidecar written
        await asyncio.to_thread(studio.close)

    return Starlette(
        routes=routes, middleware=[Middleware(Guard, settings=settings)], lifespan=lifespan
    )
