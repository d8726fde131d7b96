"""A Django project in one module, served by uvicorn through ``get_asgi_application()``, for
tests/test_django_asgi.py: profviz's Django middleware in ``MIDDLEWARE`` (store
$DJANGO_ASGI_STORE), and with $DJANGO_ASGI_OUTER set the ASGI application wrapped in
profviz.asgi.ProfilerMiddleware too.

=============================  ====================================================
/items/<int:item_id>/          an async view: awaits 50 ms
/sync/<slug:name>/             a sync view (Django runs it in a thread): sleeps 30 ms
/stream/                       an async streaming response: 3 chunks 20 ms apart
=============================  ====================================================
"""

from __future__ import annotations

import asyncio
import os
import time

import django
from django.conf import settings
from django.http import HttpResponse, JsonResponse, StreamingHttpResponse
from django.urls import path

settings.configure(
    DEBUG=False, SECRET_KEY="profviz-test", ALLOWED_HOSTS=["*"], ROOT_URLCONF=__name__,
    MIDDLEWARE=["profviz.django.ProfvizMiddleware"], INSTALLED_APPS=[],
    PROFVIZ={"store": os.environ["DJANGO_ASGI_STORE"]},
)
django.setup()


async def item(request, item_id: int):
    await asyncio.sleep(0.05)
    return JsonResponse({"item": item_id})


def sync_view(request, name: str):
    time.sleep(0.03)
    return HttpResponse(f"hello {name}")


async def stream(request):
    async def chunks():
        for index in range(3):
            await asyncio.sleep(0.02)
            yield f"chunk {index}\n".encode()
    return StreamingHttpResponse(chunks())


urlpatterns = [path("items/<int:item_id>/", item), path("sync/<slug:name>/", sync_view), path("stream/", stream)]

from django.core.asgi import get_asgi_application  # noqa: E402

application = get_asgi_application()
if os.environ.get("DJANGO_ASGI_OUTER"):
    from profviz.asgi import ProfilerMiddleware

    application = ProfilerMiddleware(application, store=os.environ["DJANGO_ASGI_STORE"])
