"""``profviz serve``: the browser UI and JSON API over a store; :func:`serve_profile` for other commands."""

from __future__ import annotations

import threading
import time
import webbrowser

import click

from ..errors import ProfvizError
from ..store import Store, open_store
from .common import notice, open_cli_store, stop_on_signals, store_option


def access_token_for(host: str, token: str | None) -> str | None:
    """The token a server on ``host`` needs: the given one, or for a non-loopback host a new one.

    Warns on stderr when the host is reachable from other machines.
    """
    from ..server.security import is_loopback, new_token  # the server (Flask) is imported only by commands that serve

    if is_loopback(host):
        return token
    notice(f"WARNING: serving on {host}, reachable from other machines; every request needs the access token")
    if token is None:
        token = new_token()
        notice("generated an access token (pass --token to choose one); it is part of the URL below")
    return token


RETAIN_EVERY_S = 3600.0


class Retention:
    """Deletes what is older than ``keep_s`` from ``store`` now and every ``every_s`` (a daemon thread)."""

    def __init__(self, store: Store, keep_s: float, every_s: float = RETAIN_EVERY_S):
        self.store, self.keep_s, self.every_s = store, keep_s, every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="profviz-retention", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                gone = self.store.retain(time.time_ns() - int(self.keep_s * 1e9))
                if any(gone.values()):
                    notice(f"retention: deleted {gone['requests']} requests, {gone['spans']} spans and {gone['profiles']} profiles "
                           f"older than {self.keep_s / 86400:g} days")
            except ProfvizError as exc:
                notice(f"retention failed ({exc}); trying again in {self.every_s / 60:g} min")
            if self._stop.wait(self.every_s):
                return

    def stop(self) -> None:
        self._stop.set()


def serve(
    store: Store,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    token: str | None = None,
    open_path: str | None = None,
    open_browser: bool = False,
    retain_s: float | None = None,
) -> None:
    """Serve until interrupted. A non-loopback ``host`` without ``token`` gets a generated one;
    ``retain_s``: keep that much data, deleting what is older every hour.

    Prints the URL (with ``?token=`` when a token is needed) on stdout; notices on stderr.
    """
    stop_on_signals()  # before the URL is printed: whoever reads it may stop the server at once
    token = access_token_for(host, token)
    from ..server import create_app
    from ..server.runner import RunningServer

    app = create_app(store, token=token, host=host)
    server = RunningServer(app, host, port)
    retention = Retention(store, retain_s) if retain_s else None
    path = (open_path or "/").lstrip("/")
    url = server.url + path + (f"?token={token}" if token else "")
    try:
        click.echo(url)
        notice(f"serving profiles from {store.location} on {server.url} (Ctrl-C to stop)")
        if open_browser:
            threading.Timer(0.3, webbrowser.open, args=(url,)).start()
        server.serve_forever()  # returns on Ctrl-C (werkzeug's server takes the KeyboardInterrupt)
    except KeyboardInterrupt:
        pass
    finally:
        if retention is not None:
            retention.stop()
        server.close()
    notice("stopped")



def serve_profile(store: Store | str | None, profile_id: int, open_browser: bool = True, *, port: int = 0) -> None:
    """Serve ``store`` on 127.0.0.1 (a free port by default) and open ``/profiles/<id>``; blocks until Ctrl-C.

    For ``attach``/``record``/``show`` ``--serve``/``--open``. Raises ProfileNotFound first if
    the id is not in the store.
    """
    store = open_store(store)
    store.profile_meta(profile_id)
    serve(store, host="127.0.0.1", port=port, open_path=f"/profiles/{profile_id}", open_browser=open_browser)


@click.command("serve")
@store_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on. Non-loopback addresses need an access token.")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True, help="Port; 0 picks a free one.")
@click.option("--open", "open_browser", is_flag=True, help="Open the UI in a browser.")
@click.option("--token", envvar="PROFVIZ_TOKEN", default=None,
              help="Access token every request must carry (generated when --host is not loopback and none is given). "
                   "Needed for pushes from apps (POST /v1/ingest), even on 127.0.0.1.")
@click.option("--retain", "retain", default=None, metavar="DURATION",
              help="Keep DURATION of data (7d...): what is older is deleted at start and every hour (see 'profviz retain').")
def serve_command(store_path: str | None, host: str, port: int, open_browser: bool, token: str | None, retain: str | None) -> None:
    """Serve the profile browser UI and its JSON API (127.0.0.1 only by default); with --token,
    also a collector that apps push to (store="https://this-host:PORT")."""
    from .routes import parse_duration

    retain_s = parse_duration(retain) if retain else None
    serve(open_cli_store(store_path), host=host, port=port, token=token, open_browser=open_browser, retain_s=retain_s)


COMMANDS = (serve_command,)
