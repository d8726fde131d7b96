"""``/api/findings``: the bottlenecks the findings detectors name (docs/findings.md), over the same
time window as the routes endpoints, for every route or one (``route`` and ``method``). Plans come
from the SQLite files spans name, and from PostgreSQL when ``$PROFVIZ_EXPLAIN_DSN`` names a database
(as for ``profviz findings``)."""

from __future__ import annotations

import os

from flask import Blueprint, jsonify, request

from ..analysis.findings import run_detectors
from ..collect.explain import ExplainUnavailable, explainers, postgres_explainer, sqlite_explainer
from ..shapes.findings import findings_json
from ..store.window import load_window
from .api_routes import _window
from .context import server_context
from .params import int_param, origin_param

bp = Blueprint("findings_api", __name__)


@bp.get("/api/findings")
def findings():
    """Findings largest impact first (at most ``limit``); recomputed only when requests or spans were added."""
    since_ns, until_ns = _window()
    route = request.args.get("route") or None
    method = (request.args.get("method") or "GET").upper() if route else None
    limit = int_param(request.args, "limit", 50, low=1, high=500)
    context = server_context()
    store = context.store
    labels = origin_param()
    key = ("findings", since_ns, until_ns, route, method, tuple(sorted((labels or {}).items())), store.newest_request_id(),
           store.newest_span_id())

    def compute() -> tuple[list, int, list[str]]:
        explain, notes, close = sqlite_explainer(), [], None
        dsn = os.environ.get("PROFVIZ_EXPLAIN_DSN")
        if dsn:
            try:
                postgres = postgres_explainer(dsn)
                explain, close = explainers(postgres, explain), postgres.close
            except ExplainUnavailable as exc:
                notes.append(f"{exc}; findings without PostgreSQL plans")
        try:
            window = load_window(store, since_ns=since_ns, until_ns=until_ns, route=route, method=method, explain=explain,
                                 labels=labels)
            return run_detectors(window), len(window.requests), notes
        finally:
            if close is not None:
                close()

    found, requests, notes = context.memo(key, compute) if since_ns is None else compute()
    return jsonify({**findings_json(found[:limit]), "requests": requests, "notes": notes})
