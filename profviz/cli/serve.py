"""``profviz serve``: the browser UI and JSON API over a store; :func:`serve_profile` for other commands."""

from __future__ import annotations

import threading
import webbrowser

import click

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


def serve(
    store: Store,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    token: str | None = None,
    open_path: str | None = None,
    open_browser: bool = False,
) -> None:
    """Serve until interrupted. A non-loopback ``host`` without ``token`` gets a generated one.

    Prints the URL (with ``?token=`` when a token is needed) on stdout; notices on stderr.
    """
    stop_on_signals()  # before the URL is printed: whoever reads it may stop the server at once
    token = access_token_for(host, token)
    from ..server import create_app
    from ..server.runner import RunningServer

    app = create_app(store, token=token, host=host)
    server = RunningServer(app, host, port)
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
              help="Access token every request must carry (generated when --host is not loopback and none is given).")
def serve_command(store_path: str | None, host: str, port: int, open_browser: bool, token: str | None) -> None:
    """Serve the profile browser UI and its JSON API (127.0.0.1 only by default)."""
    serve(open_cli_store(store_path), host=host, port=port, token=token, open_browser=open_browser)


COMMANDS = (serve_command,)
