"""Shared pieces of the browser tests, the UI benchmark and the screenshot script.

* realistic stored profiles built through ``Profile.append_sample`` (a Flask-style web app
  with request workers doing SQL, HTTP calls, JSON, lock contention, and behaviour that
  changes half way so time windows differ) and a hostile profile whose names are attack strings;
* the real server app on a real 127.0.0.1 port (:class:`profviz.server.runner.RunningServer`);
* headless Debian Chromium through Playwright.

Not a conftest: test modules import what they need.
"""

from __future__ import annotations

import random
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from profviz.model import Profile, State

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"]

SITE = "/srv/shop/.venv/lib/python3.11/site-packages"
STDLIB = "/usr/lib/python3.11"
APP = "/srv/shop/shop"

# Stacks are root first: (function, file, line).
WORKER_BASE = [
    ("_bootstrap", f"{STDLIB}/threading.py", 995),
    ("_bootstrap_inner", f"{STDLIB}/threading.py", 1038),
    ("run", f"{STDLIB}/threading.py", 975),
    ("handler_thread", f"{SITE}/waitress/task.py", 84),
    ("service", f"{SITE}/waitress/channel.py", 428),
    ("execute", f"{SITE}/waitress/task.py", 389),
    ("wsgi_app", f"{SITE}/flask/app.py", 1498),
    ("full_dispatch_request", f"{SITE}/flask/app.py", 917),
    ("dispatch_request", f"{SITE}/flask/app.py", 902),
]
SQL = [
    ("query", f"{APP}/db.py", 41),
    ("execute", f"{SITE}/sqlalchemy/engine/base.py", 1416),
    ("_execute_context", f"{SITE}/sqlalchemy/engine/base.py", 1638),
    ("do_execute", f"{SITE}/sqlalchemy/engine/default.py", 924),
]
HTTP = [
    ("fetch_rates", f"{APP}/pricing.py", 77),
    ("get", f"{SITE}/requests/api.py", 73),
    ("request", f"{SITE}/requests/sessions.py", 589),
    ("send", f"{SITE}/requests/sessions.py", 703),
    ("send", f"{SITE}/requests/adapters.py", 486),
    ("urlopen", f"{SITE}/urllib3/connectionpool.py", 793),
    ("_make_request", f"{SITE}/urllib3/connectionpool.py", 537),
    ("getresponse", f"{STDLIB}/http/client.py", 1375),
    ("begin", f"{STDLIB}/http/client.py", 318),
    ("_read_status", f"{STDLIB}/http/client.py", 279),
    ("readinto", f"{STDLIB}/socket.py", 706),
]
JSON = [
    ("render_json", f"{APP}/views.py", 120),
    ("dumps", f"{STDLIB}/json/__init__.py", 231),
    ("encode", f"{STDLIB}/json/encoder.py", 200),
    ("iterencode", f"{STDLIB}/json/encoder.py", 258),
]


@dataclass(frozen=True)
class Activity:
    """One kind of thing a thread does: its stack suffix, state, wait reason and relative weight."""

    frames: tuple
    state: State
    reason: str | None
    weight: float


def _activities(phase: int) -> dict[str, list[Activity]]:
    """What each kind of thread does; phase 0 is DB-bound, phase 1 CPU-bound (a regression)."""
    checkout = [("checkout", f"{APP}/views.py", 88)]
    catalog = [("catalog", f"{APP}/views.py", 45)]
    search = [("search", f"{APP}/views.py", 150)]
    discount = [("apply_discounts", f"{APP}/pricing.py", 30), ("compute_discount", f"{APP}/pricing.py", 52)]
    db_weight, cpu_weight = (3.0, 1.0) if phase == 0 else (1.0, 3.5)
    worker = [
        Activity(tuple(checkout + SQL), State.WAITING, "disk read", 1.2 * db_weight),
        Activity(tuple(catalog + SQL), State.WAITING, "disk read", 0.8 * db_weight),
        Activity(tuple(catalog + SQL[:2]), State.ON_CPU, None, 0.3),
        Activity(tuple(checkout + HTTP), State.WAITING, "socket recv", 1.5),
        Activity(tuple(checkout + [("reserve_stock", f"{APP}/inventory.py", 61), ("acquire", f"{STDLIB}/threading.py", 164)]), State.WAITING, "lock", 0.6),
        Activity(tuple(checkout + discount), State.ON_CPU, None, 1.0 * cpu_weight),
        Activity(tuple(checkout + discount + [("round_price", f"{APP}/pricing.py", 12)]), State.ON_CPU, None, 0.5 * cpu_weight),
        Activity(tuple(catalog + JSON), State.ON_CPU, None, 0.8),
        Activity(tuple(search + [("rank", f"{APP}/search.py", 33), ("score", f"{APP}/search.py", 70)]), State.ON_CPU, None, 0.9 * cpu_weight),
        Activity(tuple(search + [("rank", f"{APP}/search.py", 33), ("tokenize", f"{APP}/search.py", 15)]), State.RUNNABLE, None, 0.25),
    ]
    main = [
        Activity((("<module>", f"{APP}/serve.py", 12), ("serve", f"{SITE}/waitress/server.py", 307), ("run", f"{SITE}/waitress/server.py", 321), ("loop", f"{SITE}/waitress/wasyncore.py", 245), ("poll", f"{SITE}/waitress/wasyncore.py", 158), ("select", f"{STDLIB}/selectors.py", 469)), State.WAITING, "poll", 1.0),
    ]
    refresher = [
        Activity((("_bootstrap", f"{STDLIB}/threading.py", 995), ("run", f"{APP}/cache.py", 20), ("sleep", "<built-in>", 0)), State.WAITING, "sleep", 3.0),
        Activity((("_bootstrap", f"{STDLIB}/threading.py", 995), ("run", f"{APP}/cache.py", 20), ("refresh", f"{APP}/cache.py", 35), ("loads", f"{STDLIB}/json/__init__.py", 346)), State.ON_CPU, None, 1.0),
    ]
    return {"worker": worker, "main": main, "refresher": refresher}


def build_shop_profile(*, seconds: float = 6.0, rate_hz: float = 100.0, workers: int = 4, seed: int = 7,
                       start_ns: int = 1_764_000_000_000_000_000, regression: bool = True, cmdline: str = "python -m shop.serve",
                       plugins: int = 0) -> Profile:
    """A realistic wall-clock profile of a threaded web app, built through append_sample.

    Threads: MainThread (polling), ``workers`` request workers, a cache refresher. Each thread
    keeps doing one activity for a few samples (requests have duration), so flame charts show
    runs. With ``regression`` the second half is CPU-bound (discount computation, search
    ranking) instead of DB-bound, so time windows and diffs differ visibly. ``plugins`` > 0 adds
    a "plugin-loader" thread spreading its time over that many distinct small functions under
    ``load_plugins``, which the server folds away at the default threshold.
    """
    rng = random.Random(seed)
    profile = Profile({"kind": "attach", "pid": 4242, "cmdline": cmdline, "rate_hz": rate_hz, "start_ns": start_ns,
                       "duration_ns": int(seconds * 1e9)})
    threads = [("main", profile.add_thread(4242, 4242, "MainThread"))]
    threads += [("worker", profile.add_thread(4242, 4250 + i, f"waitress-{i}")) for i in range(workers)]
    threads.append(("refresher", profile.add_thread(4242, 4300, "cache-refresher")))
    plugin_thread = profile.add_thread(4242, 4400, "plugin-loader") if plugins else None
    plugin_stacks = [
        profile.intern_frames([("_bootstrap", f"{STDLIB}/threading.py", 995), ("load_plugins", f"{APP}/plugins.py", 10),
                               (f"plugin_{k}", f"{SITE}/plugin{k}/__init__.py", 1)])
        for k in range(plugins)
    ]
    period = int(1e9 / rate_hz)
    n = int(seconds * rate_hz)
    stacks: dict[tuple, int] = {}
    current: dict[int, tuple[Activity, int]] = {}
    for i in range(n):
        t = start_ns + i * period
        phase = 1 if regression and i >= n // 2 else 0
        table = _activities(phase)
        for kind, thread in threads:
            activity, left = current.get(thread, (None, 0))
            if left <= 0 or activity is None:
                choices = table[kind]
                activity = rng.choices(choices, weights=[a.weight for a in choices])[0]
                left = rng.randint(2, 12)
            current[thread] = (activity, left - 1)
            frames = (tuple(WORKER_BASE) if kind == "worker" else ()) + activity.frames
            stack = stacks.get(frames)
            if stack is None:
                stack = stacks[frames] = profile.intern_frames(frames)
            jitter = rng.randint(-period // 20, period // 20)
            profile.append_sample(t + max(0, jitter), thread, stack, period, activity.state, activity.reason)
        if plugin_thread is not None:
            profile.append_sample(t, plugin_thread, plugin_stacks[i % plugins], period, State.ON_CPU)
    return profile


HOSTILE_SCRIPT = "<script>window.__pwned='script'</script>"
HOSTILE_IMG = "\"><img src=x onerror=\"window.__pwned='img';alert(1)\">"
HOSTILE_JS_URL = "javascript:window.__pwned='href'"
HOSTILE_RTL = "evil\u202egnp.exe"
HOSTILE_LONG = "handler_" + "A" * 10_240


def build_hostile_profile(start_ns: int = 1_764_100_000_000_000_000) -> Profile:
    """A profile whose function, file, thread names and wait reasons are attack strings."""
    profile = Profile({"kind": HOSTILE_IMG, "pid": 666, "cmdline": HOSTILE_SCRIPT + " " + HOSTILE_JS_URL, "rate_hz": 100.0,
                       "start_ns": start_ns, "duration_ns": 2_000_000_000, "notes": [HOSTILE_IMG]})
    t_script = profile.add_thread(666, 667, HOSTILE_SCRIPT)
    t_img = profile.add_thread(666, 668, HOSTILE_IMG)
    t_rtl = profile.add_thread(666, 669, HOSTILE_RTL)
    frames_a = [("main", HOSTILE_JS_URL, 1), (HOSTILE_SCRIPT, f"/app/{HOSTILE_IMG}.py", 2), (HOSTILE_IMG, "/app/x.py", 3)]
    frames_b = [("main", HOSTILE_JS_URL, 1), (HOSTILE_RTL, f"/app/{HOSTILE_RTL}.py", 4), (HOSTILE_LONG, "/app/" + "d" * 5000 + ".py", 5)]
    frames_c = [("main", HOSTILE_JS_URL, 1), ("javascript:alert(document.domain)", "javascript:alert(2)", 6)]
    stacks = [profile.intern_frames(f) for f in (frames_a, frames_b, frames_c)]
    period = 10_000_000
    for i in range(200):
        t = start_ns + i * period
        profile.append_sample(t, t_script, stacks[0], period, State.ON_CPU)
        profile.append_sample(t, t_img, stacks[1], period, State.WAITING, HOSTILE_IMG)
        profile.append_sample(t, t_rtl, stacks[2 if i % 3 else 1], period, State.WAITING if i % 2 else State.ON_CPU, HOSTILE_SCRIPT if i % 2 else None)
    return profile


@contextmanager
def running_server(store) -> Iterator[str]:
    """The real profviz app over ``store`` on a free 127.0.0.1 port; yields its base URL (no trailing slash)."""
    from profviz.server import create_app
    from profviz.server.runner import RunningServer

    app = create_app(store)
    with RunningServer(app, "127.0.0.1", 0) as server:
        yield server.url.rstrip("/")


@contextmanager
def chromium(viewport=(1280, 800)):
    """A headless Debian Chromium (Playwright) and one context; yields the context."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]}, device_scale_factor=1)
            yield context
        finally:
            browser.close()


@contextmanager
def watched_page(context) -> Iterator:
    """A fresh page that must see no page error, console error, dialog or ``window.__pwned``.

    Injected markup in profiled data would trip one of these; the check runs when the page closes.
    """
    page = context.new_page()
    page.problems = []
    page.on("pageerror", lambda exc: page.problems.append(f"pageerror: {exc}"))
    page.on("console", lambda msg: msg.type == "error" and page.problems.append(f"console.error: {msg.text}"))

    def on_dialog(dialog):
        page.problems.append(f"dialog: {dialog.message}")
        dialog.dismiss()

    page.on("dialog", on_dialog)
    yield page
    pwned = page.evaluate("() => window.__pwned === undefined ? null : String(window.__pwned)")
    problems = list(page.problems)
    page.close()
    assert pwned is None and problems == [], (pwned, problems)


def repo_root() -> Path:
    return Path(__file__).resolve().parents[1]
