"""profviz.django.ProfvizMiddleware in a real Django project served by waitress: route patterns,
streaming responses, errors, and concurrent requests all recorded."""

from __future__ import annotations

import sys
import types
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

django = pytest.importorskip("django")

from django.conf import settings  # noqa: E402

from profviz.store import open_store  # noqa: E402
from tests.targets.wsgi_apps import serve  # noqa: E402


def build_urls():
    from django.http import HttpResponse, JsonResponse, StreamingHttpResponse
    from django.urls import include, path, re_path

    def item(request, item_id):
        return JsonResponse({"id": item_id})

    def order(request, code):
        return HttpResponse(f"order {code}")

    def archive(request, year):
        return HttpResponse(f"archive {year}")

    def stream(request):
        return StreamingHttpResponse((f"line {i}\n".encode() for i in range(4)), content_type="text/plain")

    def fail(request):
        raise RuntimeError("view failed")

    module = types.ModuleType("profviz_test_urls")
    api = [path("orders/<slug:code>/", order)]
    module.urlpatterns = [
        path("items/<int:item_id>/", item),
        path("api/", include(api)),
        re_path(r"^archive/(?P<year>[0-9]{4})/$", archive),
        path("stream/", stream),
        path("fail/", fail),
    ]
    sys.modules["profviz_test_urls"] = module


@pytest.fixture(scope="module")
def django_app(tmp_path_factory):
    store_path = tmp_path_factory.mktemp("django") / "profviz.db"
    if not settings.configured:
        settings.configure(
            DEBUG=False,
            ALLOWED_HOSTS=["127.0.0.1", "localhost"],
            ROOT_URLCONF="profviz_test_urls",
            SECRET_KEY="profviz-test-only",
            MIDDLEWARE=["profviz.django.ProfvizMiddleware", "django.middleware.common.CommonMiddleware"],
            INSTALLED_APPS=[],
            PROFVIZ={"store": str(store_path), "tail_threshold_ms": 1000},
            LOGGING_CONFIG=None,
        )
        django.setup()
    build_urls()
    from django.core.wsgi import get_wsgi_application

    import profviz.middleware.django as integration

    integration._recorder = None
    app = get_wsgi_application()
    yield app, store_path
    if integration._recorder is not None:
        integration._recorder.close()


def test_django_routes_streaming_errors_and_concurrency(django_app):
    app, store_path = django_app
    import profviz.middleware.django as integration

    with serve(app, threads=6) as base:
        with requests.Session() as http:
            assert http.get(base + "/items/7/").json() == {"id": 7}
            assert http.get(base + "/api/orders/big-order/").text == "order big-order"
            assert http.get(base + "/archive/2024/").text == "archive 2024"
            assert http.get(base + "/stream/").text == "line 0\nline 1\nline 2\nline 3\n"
            assert http.get(base + "/fail/").status_code == 500
            assert http.get(base + "/missing/1/").status_code == 404

        def fetch(i):
            return requests.get(f"{base}/items/{i}/", timeout=10).status_code

        with ThreadPoolExecutor(8) as pool:
            assert set(pool.map(fetch, range(80))) == {200}
    recorder = integration._recorder
    assert recorder.flush()
    with open_store(store_path) as store:
        rows = store.query_requests()
        first = [(r.path, r.route, r.status) for r in rows[:6]]
        assert first == [
            ("/items/7/", "/items/<int:item_id>/", 200),
            ("/api/orders/big-order/", "/api/orders/<slug:code>/", 200),
            ("/archive/2024/", "^archive/(?P<year>[0-9]{4})/$", 200),
            ("/stream/", "/stream/", 200),
            ("/fail/", "/fail/", 500),
            ("/missing/1/", "(unmatched)", 404),
        ]
        assert len(rows) == 86 and recorder.stats["dropped"] == 0
        stream_row = next(r for r in rows if r.route == "/stream/")
        assert stream_row.response_bytes == len("line 0\nline 1\nline 2\nline 3\n")
        assert len({r.tid for r in rows}) > 1
