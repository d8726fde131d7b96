"""A throwaway PostgreSQL cluster for the tests: ``initdb``/``pg_ctl`` from
``/usr/lib/postgresql/*/bin`` (Debian's ``postgresql``, which ``bash .ci/run`` installs), run as the
``postgres`` user when the suite runs as root (PostgreSQL refuses root), on a free 127.0.0.1 port,
with password authentication over TCP, removed afterwards."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

PASSWORD = "s3cret-pw"  # the app role's password: tests check it never reaches a store


@dataclass
class Cluster:
    base: Path
    bin: Path
    port: int

    def dsn(self, dbname: str = "shop", user: str = "shop", password: str = PASSWORD) -> str:
        return f"postgresql://{user}:{password}@127.0.0.1:{self.port}/{dbname}"


def create_database(cluster: Cluster, prefix: str = "store") -> str:
    """A new empty database owned by the ``profviz`` role (which may create them); its URL."""
    import uuid

    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.Connection.connect(cluster.dsn("postgres", "profviz"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return cluster.dsn(name, "profviz")


def drop_database(cluster: Cluster, url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.Connection.connect(cluster.dsn("postgres", "profviz"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def postgres_bin() -> Path:
    """The newest installed PostgreSQL's bin directory; raises RuntimeError saying what to install."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parent.parent.name))
    if not found:
        raise RuntimeError("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): "
                           "apt-get install postgresql, or run the suite with bash .ci/run")
    return Path(found[-1]).parent


def _as_postgres(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    return subprocess.run(prefix + args, capture_output=True, text=True, timeout=120, check=True, **kwargs)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_cluster() -> Cluster:
    """initdb, start, and create the ``shop`` role (password :data:`PASSWORD`) and database."""
    bin_dir = postgres_bin()
    base = Path(tempfile.mkdtemp(prefix="profviz-pg-"))
    if os.geteuid() == 0:
        shutil.chown(base, "postgres", "postgres")
    data = base / "data"
    _as_postgres([str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth-local=trust",
                  "--auth-host=scram-sha-256", "-E", "UTF8", "--no-sync"])
    port = _free_port()
    options = f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={base} -c fsync=off -c max_connections=60"
    _as_postgres([str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(base / "log"), "-o", options, "-w", "start"])
    cluster = Cluster(base, bin_dir, port)
    psql = [str(bin_dir / "psql"), "-h", str(base), "-p", str(port), "-U", "postgres", "-v", "ON_ERROR_STOP=1", "-q"]
    _as_postgres(psql + ["-c", f"CREATE ROLE shop LOGIN PASSWORD '{PASSWORD}'", "-c", "CREATE DATABASE shop OWNER shop",
                         "-c", f"CREATE ROLE profviz LOGIN CREATEDB PASSWORD '{PASSWORD}'"])
    return cluster


def restart_cluster(cluster: Cluster) -> None:
    """``pg_ctl restart -m fast``: every connection is cut, the server is back when this returns."""
    _as_postgres([str(cluster.bin / "pg_ctl"), "-D", str(cluster.base / "data"), "-l", str(cluster.base / "log"), "-m", "fast",
                  "-w", "restart"])


def stop_cluster(cluster: Cluster) -> None:
    try:
        _as_postgres([str(cluster.bin / "pg_ctl"), "-D", str(cluster.base / "data"), "-m", "immediate", "-w", "stop"])
    finally:
        shutil.rmtree(cluster.base, ignore_errors=True)
