"""ASGI apps for tests/test_asgi.py, served by uvicorn: a FastAPI app with a Starlette app mounted
at /star, wrapped in profviz's ASGI middleware (store $ASGI_APP_STORE) unless $ASGI_APP_BARE is set.

=============================  ====================================================
/items/{item_id}               awaits 50 ms, answers JSON
/stream                        a StreamingResponse: 5 chunks 20 ms apart
/boom                          raises RuntimeError (uvicorn answers 500)
/ready                         what the lifespan startup set
/star/users/{name}             a Starlette route in a Mount, awaits 40 ms
=============================  ====================================================
"""

from __future__ import annotations

import asyncio
import contextlib
import os

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


async def user(request) -> PlainTextResponse:
    await asyncio.sleep(0.04)
    return PlainTextResponse(f"hello {request.path_params['name']}")


star = Starlette(routes=[Route("/users/{name}", user)])
api.mount("/star", star)

if os.environ.get("ASGI_APP_BARE"):
    app = api
else:
    from profviz.asgi import ProfilerMiddleware

    app = ProfilerMiddleware(api, store=os.environ["ASGI_APP_STORE"])
