"""Django under ASGI (tests/targets/django_asgi.py on a real uvicorn): profviz's Django middleware
times each request and names it by its resolver pattern, alone or inside profviz's ASGI
middleware (which then times it), for async views, sync views (run in Django's thread) and async
streams timed to their last chunk."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from profviz.store import open_store

from .test_asgi import uvicorn


@pytest.mark.parametrize("outer", [False, True])
def test_django_asgi_requests_are_named_by_their_pattern(tmp_path, outer):
    store = tmp_path / "store.db"
    env = {"DJANGO_ASGI_STORE": str(store), **({"DJANGO_ASGI_OUTER": "1"} if outer else {})}
    with uvicorn(env, "tests.targets.django_asgi:application", "/items/0/") as url:
        paths = [f"/items/{n}/" for n in range(40)] + [f"/sync/u{n}/" for n in range(20)] + ["/stream/"] * 5
        with ThreadPoolExecutor(16) as pool:
            answers = dict(zip(paths, pool.map(lambda p: requests.get(url + p, timeout=30), paths)))
    assert answers["/items/7/"].json() == {"item": 7} and answers["/sync/u3/"].text == "hello u3"
    assert answers["/stream/"].text == "chunk 0\nchunk 1\nchunk 2\n"
    opened = open_store(store)
    try:
        rows = opened.query_requests()
    finally:
        opened.close()
    routes: dict = {}
    for row in rows:
        routes.setdefault(row.route, []).append(row)
    counts = {route: len(found) for route, found in routes.items()}
    # durations at least the views' own waits, but for the 1 ms granularity of uvloop's timers
    assert counts == {"/items/<int:item_id>/": 41, "/sync/<slug:name>/": 20, "/stream/": 5}, counts
    assert all(row.duration_ns >= 49e6 for row in routes["/items/<int:item_id>/"]), sorted(row.duration_ns / 1e6 for row in routes["/items/<int:item_id>/"])[:5]
    assert all(row.duration_ns >= 29e6 for row in routes["/sync/<slug:name>/"])
    assert all(row.duration_ns >= 58e6 and row.response_bytes == 24 for row in routes["/stream/"])  # to the last chunk
