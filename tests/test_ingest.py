"""The OTLP receiver under pressure (profviz/server/ingest.py): eight exports of 15 MB at once to a
real ``profviz serve``. Memory stays bounded, the exports beyond the decoding budget are told to
retry (503 with Retry-After) and are all stored in the end, and the UI keeps answering."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import threading
import time

import requests

from profviz.store import open_store

SPANS_PER_BODY = 35_000  # about 15 MB of OTLP/JSON


def otlp_json(first_id: int, count: int) -> bytes:
    spans = [{"traceId": f"{i:032x}", "spanId": f"{i:016x}", "name": f"SELECT {i}", "kind": 3,
              "startTimeUnixNano": str(1_764_000_000_000_000_000 + i * 1000),
              "endTimeUnixNano": str(1_764_000_000_000_000_000 + i * 1000 + 500),
              "attributes": [{"key": "db.statement", "value": {"stringValue": f"SELECT * FROM posts WHERE id = {i} AND author = 'x'"}},
                             {"key": "thread.id", "value": {"intValue": "1234"}},
                             {"key": "db.system", "value": {"stringValue": "postgresql"}}]}
             for i in range(first_id, first_id + count)]
    return json.dumps({"resourceSpans": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "shop"}}]},
                                          "scopeSpans": [{"spans": spans}]}]}).encode()


def peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def test_eight_concurrent_15_mb_exports_stay_bounded_and_all_arrive_while_the_ui_answers(tmp_path):
    store = tmp_path / "store.db"
    log = tempfile.TemporaryFile("w+")
    server = subprocess.Popen([sys.executable, "-m", "profviz", "serve", "--store", str(store), "--port", "0"],
                              stdout=subprocess.PIPE, stderr=log, text=True)
    try:
        url = server.stdout.readline().strip().rstrip("/")
        assert url.startswith("http://127.0.0.1:"), url
        bodies = [otlp_json(1 + n * 1_000_000, SPANS_PER_BODY) for n in range(8)]
        assert all(len(body) > 15_000_000 for body in bodies)
        statuses: dict[int, list] = {n: [] for n in range(8)}
        ui_ms: list[float] = []
        exporting = threading.Event()
        exporting.set()

        def export(n: int) -> None:
            with requests.Session() as session:
                for _ in range(200):
                    response = session.post(url + "/v1/traces", data=bodies[n], headers={"Content-Type": "application/json"}, timeout=120)
                    statuses[n].append((response.status_code, response.headers.get("Retry-After")))
                    if response.status_code != 503:
                        return
                    time.sleep(float(response.headers["Retry-After"]))

        def poll_ui() -> None:
            with requests.Session() as session:
                while exporting.is_set():
                    started = time.perf_counter()
                    assert session.get(url + "/api/profiles", timeout=30).status_code == 200
                    ui_ms.append((time.perf_counter() - started) * 1000)
                    time.sleep(0.1)

        poller = threading.Thread(target=poll_ui)
        poller.start()
        exporters = [threading.Thread(target=export, args=(n,)) for n in range(8)]
        for thread in exporters:
            thread.start()
        for thread in exporters:
            thread.join(timeout=600)
        exporting.clear()
        poller.join(timeout=60)
        peak = peak_rss_mb(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)
    finals = [attempts[-1] for attempts in statuses.values()]
    refused = [attempt for attempts in statuses.values() for attempt in attempts if attempt[0] == 503]
    assert all(status == 200 for status, _ in finals), statuses
    assert refused and all(retry_after == "1" for _, retry_after in refused), statuses
    assert peak < 500, f"peak RSS {peak:.0f} MB"
    assert ui_ms and max(ui_ms) < 1000, (len(ui_ms), max(ui_ms))
    opened = open_store(store)
    stored = opened.count_spans()
    opened.close()
    assert stored == 8 * SPANS_PER_BODY
    print(f"peak RSS {peak:.0f} MB; {len(refused)} refusals; UI max {max(ui_ms):.0f} ms over {len(ui_ms)} requests")
