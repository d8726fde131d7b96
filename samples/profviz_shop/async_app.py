"""The shop as an asyncio app (Starlette under uvicorn): the same data, the asyncio bottlenecks.

Endpoints (all JSON):

    GET /health              trivial and fast
    GET /posts               N+1: 50 recent posts, then one awaited author query per post
    GET /posts/fast          the same data with one JOIN
    GET /posts/{post_id}     one post with its author
    GET /enrich              one awaited external call per item (httpx.AsyncClient), one after another
    GET /enrich/fast         the same calls at once (asyncio.gather)
    GET /enrich/sync         the same calls with requests.get inside ``async def``: each blocks the loop
    GET /export              ~20k rows serialised with json.dumps on the loop (blocks it)
    GET /export/fast         the same in a worker thread (asyncio.to_thread)

:func:`create_async_app` builds it over the database server and the external service of
``python -m profviz_shop --asgi``. With ``trace=True`` every statement is an OpenTelemetry span
(``db.statement``), as an app with tracing does (profviz's ``otel="auto"`` instruments httpx).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time

import httpx
import requests
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from profviz_shop.app import (
    AUTHOR_BY_ID_SQL,
    ENRICH_PRODUCTS_SQL,
    EXPORT_SQL,
    OUTBOUND_TIMEOUT_S,
    POST_WITH_AUTHOR_SQL,
    RECENT_POSTS_SQL,
    RECENT_POSTS_WITH_AUTHORS_SQL,
)
from profviz_shop.async_netdb import Pool

POOL_SIZE = 10


def create_async_app(*, db_address: str, external_url: str, trace: bool = False) -> Starlette:
    """The asyncio shop over the database server at ``db_address`` and the external service at ``external_url``."""
    state: dict = {}
    external_url = external_url.rstrip("/")
    tracer = _tracer() if trace else None

    async def fetch(sql: str, params=()) -> list:
        if tracer is None:
            return await state["pool"].fetch(sql, params)
        with tracer.start_as_current_span(sql.split(None, 1)[0], kind=_client_kind(),
                                          attributes={"db.system": "sqlite", "db.statement": sql}):
            return await state["pool"].fetch(sql, params)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        state["pool"] = Pool(db_address, POOL_SIZE)
        state["http"] = httpx.AsyncClient(timeout=OUTBOUND_TIMEOUT_S, limits=httpx.Limits(max_connections=50))
        yield
        await state["http"].aclose()
        state["pool"].close()

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    async def posts_n_plus_one(request: Request) -> JSONResponse:
        limit = _int_param(request, "limit", default=50, low=1, high=200)
        posts = []
        for row in await fetch(RECENT_POSTS_SQL, (limit,)):
            [author] = await fetch(AUTHOR_BY_ID_SQL, (row["author_id"],))
            posts.append(_post(row, author["id"], author["name"], author["email"]))
        return JSONResponse({"posts": posts})

    async def posts_joined(request: Request) -> JSONResponse:
        limit = _int_param(request, "limit", default=50, low=1, high=200)
        rows = await fetch(RECENT_POSTS_WITH_AUTHORS_SQL, (limit,))
        return JSONResponse({"posts": [_post(row, row["author_id"], row["name"], row["email"]) for row in rows]})

    async def post(request: Request) -> JSONResponse:
        rows = await fetch(POST_WITH_AUTHOR_SQL, (request.path_params["post_id"],))
        if not rows:
            return JSONResponse({"error": "no such post"}, status_code=404)
        row = rows[0]
        return JSONResponse({**_post(row, row["author_id"], row["name"], row["email"]), "body": row["body"]})

    async def products(request: Request) -> list:
        return await fetch(ENRICH_PRODUCTS_SQL, (_int_param(request, "items", default=10, low=1, high=50),))

    async def enrich(request: Request) -> JSONResponse:
        items = []
        for product in await products(request):
            answer = await state["http"].get(f"{external_url}/items/{product['id']}")
            items.append({**dict(zip(product.keys(), product)), "external": answer.json()})
        return JSONResponse({"items": items})

    async def enrich_concurrently(request: Request) -> JSONResponse:
        rows = await products(request)
        answers = await asyncio.gather(*(state["http"].get(f"{external_url}/items/{row['id']}") for row in rows))
        return JSONResponse({"items": [{**dict(zip(row.keys(), row)), "external": answer.json()} for row, answer in zip(rows, answers)]})

    async def enrich_blocking(request: Request) -> JSONResponse:
        items = []
        for product in await products(request):
            answer = requests.get(f"{external_url}/items/{product['id']}", timeout=OUTBOUND_TIMEOUT_S)  # blocks the loop
            items.append({**dict(zip(product.keys(), product)), "external": answer.json()})
        return JSONResponse({"items": items})

    async def export(request: Request) -> Response:
        rows = await fetch(EXPORT_SQL, (_int_param(request, "rows", default=20_000, low=1, high=50_000),))
        return Response(_export_json(rows), media_type="application/json")  # 20k rows encoded on the loop

    async def export_in_a_thread(request: Request) -> Response:
        rows = await fetch(EXPORT_SQL, (_int_param(request, "rows", default=20_000, low=1, high=50_000),))
        return Response(await asyncio.to_thread(_export_json, rows), media_type="application/json")

    return Starlette(lifespan=lifespan, routes=[
        Route("/health", health), Route("/posts", posts_n_plus_one), Route("/posts/fast", posts_joined),
        Route("/posts/{post_id:int}", post), Route("/enrich", enrich), Route("/enrich/fast", enrich_concurrently),
        Route("/enrich/sync", enrich_blocking), Route("/export", export), Route("/export/fast", export_in_a_thread),
    ])


def _export_json(rows: list) -> str:
    return json.dumps({"exported_at": time.time(), "count": len(rows), "posts": [
        {"id": row["id"], "title": row["title"], "slug": row["slug"], "tag": row["tag"], "body": row["body"],
         "created_at": row["created_at"], "author": {"id": row["author_id"], "name": row["name"], "email": row["email"]}}
        for row in rows]})


def _post(row, author_id: int, name: str, email: str) -> dict:
    return {"id": row["id"], "title": row["title"], "slug": row["slug"], "tag": row["tag"], "created_at": row["created_at"],
            "author": {"id": author_id, "name": name, "email": email}}


def _int_param(request: Request, name: str, *, default: int, low: int, high: int) -> int:
    try:
        value = int(request.query_params.get(name, default))
    except ValueError:
        value = default
    return max(low, min(high, value))


def _tracer():
    from opentelemetry import trace

    return trace.get_tracer("profviz_shop.async_netdb")


def _client_kind():
    from opentelemetry.trace import SpanKind

    return SpanKind.CLIENT
