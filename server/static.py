"""Serving the page, its assets, the client wheel and the vendored runtime.

Only named files are served from the repository (never the folder itself: it holds the server's
code and maybe a `.env`). The vendored runtime lives under versioned paths, so it is cached for
a year as immutable, and sent precompressed (the `.zst` or `.gz` files setup wrote) when the
browser accepts zstd or gzip: zstd first, which a warm load decodes from the HTTP cache about
5x faster (server/vendor.py). The page names its own files (main.py, the assets, the client) under
content-hashed URLs, cached as immutable too (server/page.py); index.html, which carries their
digests, is revalidated on every load (cheap: an ETag answered with 304), and so are the files
under their plain names (for pages of your own).
"""

from __future__ import annotations

import hashlib
import html
import mimetypes
import re
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from . import page as page_files
from . import wheel as client_wheel
from .vendor import VENDOR_DIR

ROOT = Path(__file__).resolve().parent.parent
PAGE_FILES = {"index.html", "main.py", "pyscript.toml", "pyscript-pyodide.toml"}
ASSETS_DIR = ROOT / "assets"

IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"

mimetypes.add_type("application/wasm", ".wasm")
mimetypes.add_type("text/javascript", ".mjs")
mimetypes.add_type("text/javascript", ".js")
mimetypes.add_type("text/x-python", ".py")
mimetypes.add_type("application/toml", ".toml")
mimetypes.add_type("image/svg+xml", ".svg")
mimetypes.add_type("application/zip", ".whl")


def content_type(name: str) -> str:
    kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
    if kind.startswith("text/") or kind in ("application/json", "application/toml"):
        kind += "; charset=utf-8"
    return kind


def not_found(what: str) -> JSONResponse:
    return JSONResponse({"error": f"{what} not found"}, status_code=404)


MAX_PATH_CHARS = 1024


def _inside(base: Path, relative: str) -> Path | None:
    """The file `relative` names under `base`, or None if it escapes `base` or is missing.

    Names no file system takes (a NUL, a name longer than the system allows, an encoding it
    cannot write) are simply not found, never an error.
    """
    if "\0" in relative or len(relative) > MAX_PATH_CHARS:
        return None
    try:
        candidate = (base / relative).resolve()
        if not candidate.is_relative_to(base.resolve()) or not candidate.is_file():
            return None
    except (OSError, ValueError):
        return None
    return candidate


def _etag_for(path: Path) -> str:
    stat = path.stat()
    return '"' + hashlib.md5(f"{stat.st_mtime_ns}-{stat.st_size}".encode()).hexdigest() + '"'


def _revalidated_file(request: Request, path: Path) -> Response:
    etag = _etag_for(path)
    headers = {"Cache-Control": REVALIDATE, "ETag": etag}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return FileResponse(path, media_type=content_type(path.name), headers=headers)


def render_index(authorize_url: str, pipeline_id: str) -> bytes:
    """index.html with the page's settings filled into its `<meta name="layercode:...">` tags."""
    page = (ROOT / "index.html").read_text()
    for name, value in (("authorize-url", authorize_url), ("pipeline-id", pipeline_id)):
        page = re.sub(
            rf'(<meta name="layercode:{name}" content=")[^"]*(")',
            lambda m, v=value: m.group(1) + html.escape(v, quote=True) + m.group(2),
            page,
        )
    return page.encode()


def current_page_files(state) -> page_files.PageFiles:
    """main.py and the assets as they are on disk now; the client as built at start."""
    return page_files.collect(ROOT, state.client_wheel, state.client_mpy)


def render_page(authorize_url: str, pipeline_id: str, files: page_files.PageFiles) -> bytes:
    """The page as served and exported: settings filled in, files under hashed URLs."""
    page = render_index(authorize_url, pipeline_id).decode()
    return page_files.fingerprint(page, files, ROOT).encode()


async def index(request: Request) -> Response:
    settings = request.app.state.settings
    files = current_page_files(request.app.state)
    body = render_page("/api/authorize", settings.pipeline_id, files)
    etag = '"' + hashlib.md5(body).hexdigest() + '"'
    headers = {"Cache-Control": REVALIDATE, "ETag": etag}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(body, media_type="text/html; charset=utf-8", headers=headers)


async def page_file(request: Request) -> Response:
    name = request.path_params["name"]
    if name not in PAGE_FILES:
        return not_found(name)
    return _revalidated_file(request, ROOT / name)


async def asset(request: Request) -> Response:
    path = _inside(ASSETS_DIR, request.path_params["path"])
    if path is None:
        return not_found("asset")
    return _revalidated_file(request, path)


async def wheel(request: Request) -> Response:
    built = request.app.state.client_wheel
    if request.path_params["filename"] != built.filename:
        return not_found(f"client wheel {request.path_params['filename']!r}")
    headers = {"Cache-Control": REVALIDATE, "ETag": built.etag}
    if request.headers.get("if-none-match") == built.etag:
        return Response(status_code=304, headers=headers)
    return Response(built.data, media_type="application/zip", headers=headers)


async def runtime(request: Request) -> Response:
    relative = request.path_params["path"]
    path = _inside(VENDOR_DIR, relative)
    if path is None or path.name.startswith("."):
        return not_found("runtime file")
    headers = {"Cache-Control": IMMUTABLE, "Vary": "Accept-Encoding"}
    accepted = accepted_encodings(request.headers.get("accept-encoding", ""))
    for encoding, suffix in PRECOMPRESSED:
        packed = path.with_name(path.name + suffix)
        if encoding in accepted and packed.is_file():
            headers["Content-Encoding"] = encoding
            return FileResponse(packed, media_type=content_type(path.name), headers=headers)
    return FileResponse(path, media_type=content_type(path.name), headers=headers)


PRECOMPRESSED = (("zstd", ".zst"), ("gzip", ".gz"))  # in the order they are preferred


def accepted_encodings(header: str) -> set[str]:
    """The content codings an Accept-Encoding header takes (not those it gives `q=0`)."""
    accepted = set()
    for item in header.split(","):
        name, *params = (part.strip() for part in item.split(";"))
        refused = any(re.fullmatch(r"q\s*=\s*0(\.0{0,3})?", param) for param in params)
        if name and not refused:
            accepted.add(name.lower())
    return accepted


async def hashed_file(request: Request) -> Response:
    """A page file under its content-hashed URL: immutable. A digest that is not the file's
    (a page loaded before the file changed) gets today's file, revalidated, never cached as
    that digest's."""
    path = request.path_params["path"]
    data = current_page_files(request.app.state).get(path)
    if data is None:
        return not_found("page file")
    if request.path_params["digest"] != page_files.digest_of(data):
        etag = '"' + page_files.digest_of(data) + '"'
        return Response(
            data, media_type=content_type(path), headers={"Cache-Control": REVALIDATE, "ETag": etag}
        )
    return Response(data, media_type=content_type(path), headers={"Cache-Control": IMMUTABLE})


def load_client_wheel() -> client_wheel.Wheel:
    return client_wheel.build_wheel()


async def compiled_client_file(request: Request) -> Response:
    """One file of the client precompiled for the MicroPython page (server/wheel.py)."""
    data = request.app.state.client_mpy.get(request.path_params["path"])
    if data is None:
        return not_found("compiled client file")
    return _revalidated_bytes(request, data)


async def client_wheel_file(request: Request) -> Response:
    """One file of the client's wheel, as the Pyodide page names them (server/page.py)."""
    members = page_files.wheel_members(request.app.state.client_wheel.data)
    data = members.get(request.path_params["path"])
    if data is None:
        return not_found("client file")
    return _revalidated_bytes(request, data)


def _revalidated_bytes(request: Request, data: bytes) -> Response:
    etag = '"' + hashlib.sha256(data).hexdigest()[:32] + '"'
    headers = {"Cache-Control": REVALIDATE, "ETag": etag}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(data, media_type=content_type(request.path_params["path"]), headers=headers)


def load_client_mpy() -> dict[str, bytes]:
    return client_wheel.build_mpy_files()


routes = [
    Route("/", index, methods=["GET", "HEAD"]),
    Route("/runtime/{path:path}", runtime, methods=["GET", "HEAD"]),
    Route(
        "/" + page_files.HASHED_PREFIX + "{digest}/{path:path}",
        hashed_file,
        methods=["GET", "HEAD"],
    ),
    Route(client_wheel.MPY_URL_PATH + "{path:path}", compiled_client_file, methods=["GET", "HEAD"]),
    Route("/" + page_files.WHEEL_FILES + "{path:path}", client_wheel_file, methods=["GET", "HEAD"]),
    Route("/client/{filename}", wheel, methods=["GET", "HEAD"]),
    Route("/assets/{path:path}", asset, methods=["GET", "HEAD"]),
    Route("/{name}", page_file, methods=["GET", "HEAD"]),
]
