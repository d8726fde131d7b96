"""Page routes and static files of the browser UI in ``web/``.

Extensionless paths (``/``, ``/profiles/12``, ``/diff``...) get ``web/index.html`` (the UI routes
on the client); other paths are files under ``web/`` with explicit MIME types (ES modules must
be ``text/javascript``). Tests, ``node_modules`` and dotfiles are never served.
"""

from __future__ import annotations

import mimetypes
from importlib import resources
from pathlib import Path

from flask import Blueprint, current_app, send_from_directory
from werkzeug.exceptions import NotFound

bp = Blueprint("pages", __name__)

MIME_TYPES = {
    ".js": "text/javascript", ".mjs": "text/javascript", ".css": "text/css", ".html": "text/html",
    ".json": "application/json", ".map": "application/json", ".svg": "image/svg+xml", ".png": "image/png",
    ".ico": "image/x-icon", ".woff2": "font/woff2", ".woff": "font/woff", ".txt": "text/plain",
}
HIDDEN_DIRECTORIES = {"tests", "node_modules"}
WEB_ROOT_KEY = "PROFVIZ_WEB_ROOT"


def default_web_root() -> Path:
    """The UI's directory: the checkout's top-level ``web/``, else the installed ``profviz/_web/``.

    A checkout (or an editable install of one) is recognised by ``pyproject.toml`` and
    ``web/index.html`` beside the ``profviz`` package; a wheel or sdist install ships ``web/`` as
    the data-only package ``profviz._web`` (see ``[tool.setuptools]`` in pyproject.toml). When
    neither exists the installed location is returned, so the "UI is missing" error names it.
    """
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "pyproject.toml").is_file() and (checkout / "web" / "index.html").is_file():
        return checkout / "web"
    return _installed_web_root()


def _installed_web_root() -> Path:
    installed = resources.files("profviz") / "_web"
    if isinstance(installed, Path):
        return installed
    return Path(__file__).resolve().parents[1] / "_web"


def _web_root() -> Path:
    return Path(current_app.config[WEB_ROOT_KEY])


def _index():
    root = _web_root()
    if not (root / "index.html").is_file():
        raise NotFound(f"the web UI is missing ({root / 'index.html'} not found); the JSON API under /api/ still works")
    response = send_from_directory(root, "index.html", mimetype="text/html", max_age=0)
    return response


@bp.get("/")
def index():
    return _index()


@bp.get("/<path:path>")
def page_or_file(path: str):
    parts = path.split("/")
    if parts[0] == "api":
        raise NotFound(f"no API endpoint /{path[:200]}; see docs/api.md")
    if "." not in parts[-1]:
        return _index()
    if parts[0] in HIDDEN_DIRECTORIES or any(p.startswith(".") or p == "" for p in parts):
        raise NotFound(f"no file /{path[:200]}")
    suffix = Path(parts[-1]).suffix.lower()
    mimetype = MIME_TYPES.get(suffix) or mimetypes.guess_type(parts[-1])[0] or "application/octet-stream"
    return send_from_directory(_web_root(), path, mimetype=mimetype, max_age=0)
