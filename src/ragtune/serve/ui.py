"""The web UI at ``/``: chat, sources, documents and settings pages, and their files.

The pages are plain HTML written here from templates in ``ui/templates``; everything
they show that comes from an index (titles, passages, URLs, answers) is fetched by the
JavaScript in ``ui/static`` from the API and inserted as text, never as markup: pages
and answers are hostile. So the pages can carry a strict Content-Security-Policy (no
inline script, no other origin), and a script that a source smuggled into an answer
has nothing to run in.

Only the files found in ``ui/static`` when the module loads are served, by name, so a
request cannot walk out of that folder.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable
from string import Template

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from ragtune.serve.errors import ApiError
from ragtune.version import __version__

router = APIRouter(include_in_schema=False)

# No script but the UI's own files, no inline script or style, nothing from another
# origin, and not framed by anyone (clickjacking).
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}
_CONTENT_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}


@dataclass(frozen=True)
class Page:
    path: str
    template: str
    title: str
    script: str


PAGES = (
    Page("/", "chat.html", "Chat", "chat.js"),
    Page("/sources", "sources.html", "Sources", "sources.js"),
    Page("/documents", "documents.html", "Documents", "documents.js"),
    Page("/settings", "settings.html", "Settings", "settings.js"),
)


def _ui_files() -> Traversable:
    return resources.files("ragtune.serve").joinpath("ui")


@cache
def _template(name: str) -> Template:
    return Template(_ui_files().joinpath("templates", name).read_text(encoding="utf-8"))


@cache
def _static_files() -> dict[str, tuple[bytes, str]]:
    """Every file the UI serves: name → (content, media type)."""
    found: dict[str, tuple[bytes, str]] = {}
    for entry in _ui_files().joinpath("static").iterdir():
        media_type = _CONTENT_TYPES.get("." + entry.name.rpartition(".")[2])
        if entry.is_file() and media_type:
            found[entry.name] = (entry.read_bytes(), media_type)
    return found


def render_page(page: Page) -> str:
    """The page's HTML: the shared frame around the page's own body."""
    nav = "\n".join(
        f'<li><a href="{other.path}"'
        + (' aria-current="page"' if other is page else "")
        + f">{html.escape(other.title)}</a></li>"
        for other in PAGES
    )
    body = _template(page.template).substitute()
    return _template("base.html").substitute(
        title=html.escape(page.title),
        nav=nav,
        body=body,
        script=html.escape(page.script),
        version=html.escape(__version__),
    )


def _page_route(page: Page) -> None:
    async def show(_: Request) -> HTMLResponse:
        return HTMLResponse(
            render_page(page), headers={**SECURITY_HEADERS, "Cache-Control": "no-store"}
        )

    router.add_api_route(page.path, show, methods=["GET"], name=f"ui_{page.template[:-5]}")


for _page in PAGES:
    _page_route(_page)


@router.get("/static/{name}", name="ui_static")
async def static_file(name: str) -> Response:
    found = _static_files().get(name)
    if found is None:
        raise ApiError(404, f"no such file: {name[:80]!r}", code="not_found")
    content, media_type = found
    # no-cache: the browser revalidates, so an upgraded server's UI is used at once.
    return Response(
        content, media_type=media_type, headers={**SECURITY_HEADERS, "Cache-Control": "no-cache"}
    )
