"""ASGI apps for tests/test_asgi.py, served by uvicorn: a FastAPI app with a Starlette app mounted
at /star, wrapped in profviz's ASGI middleware (store $ASGI_APP_STORE) unless $ASGI_APP_BARE is set.

=============================  ====================================================
/items/{item_id}               awaits 50 ms, answers JSON
/stream                        a StreamingResponse: 5 chunks 20 ms apart
/boom                          raises RuntimeError (uvicorn answers 500)
/ready                         what the lifespan startup set
/star/users/{name}             a Starlette route in a Mount, awaits 40 ms
/hold/{n}                      awaits 1 s (requests in flight beside the others)
/remote/{n}                    awaits GET $ASGI_APP_PEER/slow?ms=200 (httpx.AsyncClient)
/fanout                        awaits three such calls at once (asyncio.gather)
/blocking                      requests.get of the same URL inside ``async def``: blocks the loop
/sync-remote                   the same in a plain ``def`` endpoint (FastAPI runs it in its threadpool)
=============================  ====================================================

$ASGI_APP_OPTIONS: the middleware's options as JSON.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os

import httpx
import requests

from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI):
    app.state.ready = "started"
    yield
    app.state.ready = "stopped"


api = FastAPI(lifespan=lifespan)


@api.get("/items/{item_id}")
async def item(item_id: int) -> dict:
    await asyncio.sleep(0.05)
    return {"item": item_id}


@api.get("/stream")
async def stream() -> StreamingResponse:
    async def chunks():
        for index in range(5):
            await asyncio.sleep(0.02)
            yield f"chunk {index}\n".encode()
    return StreamingResponse(chunks(), media_type="text/plain")


@api.get("/boom")
async def boom() -> dict:
    raise RuntimeError("boom from the app")


@api.get("/ready")
async def ready() -> dict:
    return {"ready": api.state.ready}


PEER = os.environ.get("ASGI_APP_PEER", "")
_peer: httpx.AsyncClient | None = None


def peer() -> httpx.AsyncClient:
    global _peer
    if _peer is None:
        _peer = httpx.AsyncClient(limits=httpx.Limits(max_connections=200), timeout=30)
    return _peer


@api.get("/hold/{n}")
async def hold(n: int) -> dict:
    await asyncio.sleep(1.0)
    return {"held": n}


@api.get("/remote/{n}")
async def remote(n: int) -> dict:
    answer = await peer().get(f"{PEER}/slow?ms=200")
    return {"n": n, "peer": answer.text}


@api.get("/fanout")
async def fanout() -> dict:
    answers = await asyncio.gather(*(peer().get(f"{PEER}/slow?ms=200") for _ in range(3)))
    return {"answers": len(answers)}


@api.get("/blocking")
async def blocking() -> dict:
    answer = requests.get(f"{PEER}/slow?ms=200", timeout=30)
    return {"peer": answer.text}


@api.get("/sync-remote")
def sync_remote() -> dict:
    answer = requests.get(f"{PEER}/slow?ms=200", timeout=30)
    return {"peer": answer.text}


async def user(request) -> PlainTextResponse:
    await asyncio.sleep(0.04)
    return PlainTextResponse(f"hello {request.path_params['name']}")


star = Starlette(routes=[Route("/users/{name}", user)])
api.mount("/star", star)

if os.environ.get("ASGI_APP_BARE"):
    app = api
else:
    from profviz.asgi import ProfilerMiddleware

    app = ProfilerMiddleware(api, store=os.environ["ASGI_APP_STORE"], **json.loads(os.environ.get("ASGI_APP_OPTIONS", "{}")))
