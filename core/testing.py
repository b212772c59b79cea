"""Test helpers and pytest fixtures for sipline and its plugins.

Shipped with the core (``pytest11`` entry point ``sipline``) so that plugin
distributions test against a real server the same way the core does:

- :func:`free_port` picks a loopback port free for both UDP and TCP;
- :class:`SipClient` is a raw SIP client socket (UDP or TCP) on loopback;
- :class:`ServerProcess` runs ``sipline run`` as a real subprocess and stops it by PID;
- :func:`inprocess_server` runs a :class:`~sipline.server.Server` in a thread,
  with plugin objects passed directly (for hook tests);
- :func:`options_request` builds a valid OPTIONS request;
- :class:`PostgresCluster` is a throwaway PostgreSQL server (initdb + pg_ctl on a
  free loopback port), stopped by PID;
- :func:`assert_schema_matches` and :func:`migration_round_trip` check a plugin's
  Alembic branch against its SQLAlchemy models.

Fixtures: ``sipline_process`` (factory of ServerProcess), ``sip_client``
(factory of SipClient); both clean up after the test. Databases:
``postgresql_cluster`` (one per session; skipped, saying why, when no PostgreSQL
server can be started), ``postgresql_url`` (a fresh, empty database on it),
``sqlite_url`` (a SQLite file in the test's tmp dir) and ``database_url``
(parametrized: each test runs on SQLite and on PostgreSQL).
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import Any

import pytest

LOOPBACK4 = "127.0.0.1"
LOOPBACK6 = "::1"


def ipv6_available() -> bool:
    """True when ::1 can be bound (some containers disable IPv6)."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind((LOOPBACK6, 0))
        return True
    except OSError:
        return False


def free_port(host: str = LOOPBACK4) -> int:
    """A port that is free for both UDP and TCP on ``host`` right now."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(200):
        with socket.socket(family, socket.SOCK_DGRAM) as u:
            u.bind((host, 0))
            port = u.getsockname()[1]
            with socket.socket(family, socket.SOCK_STREAM) as t:
                try:
                    t.bind((host, port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free port found")


def hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def options_request(
    target: str,
    *,
    local: str,
    transport: str = "UDP",
    call_id: str | None = None,
    extra: str = "",
    ruri: str | None = None,
    max_forwards: int = 70,
) -> bytes:
    """A valid OPTIONS request to ``target`` (``host:port``) sent from ``local``."""
    call_id = call_id or uuid.uuid4().hex
    branch = "z9hG4bK" + uuid.uuid4().hex[:16]
    ruri = ruri or f"sip:{target}"
    return (
        f"OPTIONS {ruri} SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} {local};branch={branch};rport\r\n"
        f"Max-Forwards: {max_forwards}\r\n"
        f"From: <sip:tester@{target}>;tag={uuid.uuid4().hex[:8]}\r\n"
        f"To: <sip:{target}>\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: 1 OPTIONS\r\n"
        f"{extra}"
        f"Content-Length: 0\r\n\r\n"
    ).encode()


def wait_for(condition: Callable[[], Any], timeout: float = 3.0, what: str = "condition",
             interval: float = 0.01) -> Any:
    """Poll ``condition`` until it returns something truthy, and return that.

    For work that happens in another thread or process (a server, a writer
    thread); raises AssertionError naming ``what`` after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout}s")
        time.sleep(interval)


class SipClient:
    """A blocking SIP client socket on loopback (UDP datagrams or a TCP stream)."""

    def __init__(self, server: tuple[str, int], proto: str = "udp", timeout: float = 3.0):
        self.server = server
        self.proto = proto
        family = socket.AF_INET6 if ":" in server[0] else socket.AF_INET
        kind = socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM
        self.sock = socket.socket(family, kind)
        self.sock.settimeout(timeout)
        if proto == "udp":
            self.sock.bind((server[0], 0))
        else:
            self.sock.connect(server)
        self.local = self.sock.getsockname()[:2]
        from sipline.sip import StreamFramer

        self._framer = StreamFramer()
        self._frames: list[bytes] = []

    @property
    def local_hostport(self) -> str:
        return hostport(*self.local)

    def send(self, data: bytes) -> None:
        if self.proto == "udp":
            self.sock.sendto(data, self.server)
        else:
            self.sock.sendall(data)

    def recv(self, timeout: float | None = None) -> bytes:
        """The next message (one datagram, or one Content-Length framed TCP message)."""
        if timeout is not None:
            self.sock.settimeout(timeout)
        if self.proto == "udp":
            data, _ = self.sock.recvfrom(65535)
            return data
        while not self._frames:
            chunk = self.sock.recv(65535)
            if not chunk:
                raise ConnectionError("server closed the connection")
            self._frames.extend(self._framer.feed(chunk))
        return self._frames.pop(0)

    def request(self, data: bytes, timeout: float | None = None) -> Any:
        """Send ``data`` and return the first final (non-1xx) response, parsed."""
        from sipline.sip import parse_message

        self.send(data)
        deadline = time.monotonic() + (timeout or self.sock.gettimeout() or 3.0)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no final response")
            msg = parse_message(self.recv(remaining), stream=self.proto != "udp")
            if getattr(msg, "status", 0) >= 200:
                return msg

    def expect_silence(self, timeout: float = 0.5) -> bool:
        """True when nothing arrives within ``timeout`` seconds."""
        try:
            self.recv(timeout)
        except (TimeoutError, socket.timeout):
            return True
        return False

    def close(self) -> None:
        self.sock.close()


class ServerProcess:
    """``sipline run -c CONFIG`` as a real subprocess, stopped by its PID."""

    def __init__(self, config_text: str, workdir: Path, *, env: dict[str, str] | None = None):
        self.workdir = workdir
        self.config_path = workdir / "sipline.toml"
        self.config_path.write_text(config_text)
        self.log_path = workdir / "sipline.log"
        self.env = {**os.environ, "SIPLINE_DATA_DIR": str(workdir / "data"), **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, probe: tuple[str, int] | None = None, timeout: float = 15.0) -> ServerProcess:
        """Start the server and wait until ``probe`` (a UDP listener) answers OPTIONS."""
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sipline", "run", "-c", str(self.config_path)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=self.workdir,
        )
        if probe is not None:
            self.wait_ready(probe, timeout)
        return self

    def wait_ready(self, probe: tuple[str, int], timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"sipline exited with {self.proc.returncode}:\n{self.log()}")
            client = SipClient(probe, timeout=0.3)
            try:
                client.request(options_request(hostport(*probe), local=client.local_hostport))
                return
            except (TimeoutError, OSError):
                pass
            finally:
                client.close()
        raise RuntimeError(f"sipline did not answer on {probe} within {timeout}s:\n{self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        """Signal the server (by PID) and wait for its exit code."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


class InProcessServer:
    """A Server running in a background thread's event loop (hook tests)."""

    def __init__(self, config: Any, pm: Any) -> None:
        from sipline.server import Server

        self.loop = asyncio.new_event_loop()
        self.server = Server(config, pm)
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def start(self) -> InProcessServer:
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(10)
        except BaseException:
            self._halt()
            raise
        return self

    def _halt(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()

    def call(self, coro: Any, timeout: float = 10) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def address(self, proto: str = "udp") -> tuple[str, int]:
        for t in self.server.transports:
            if t.proto == proto:
                return t.local
        raise LookupError(f"no {proto} listener")

    def stop(self) -> None:
        try:
            self.call(self.server.stop())
        finally:
            self._halt()


@contextlib.contextmanager
def inprocess_server(
    toml: dict[str, Any] | None = None,
    plugins: list[tuple[str, Any]] | None = None,
    *,
    script: Any = None,
) -> Iterator[InProcessServer]:
    """Run a server in-process with ``plugins`` (``(name, object)`` pairs) in pipeline order.

    ``toml`` is the parsed configuration; by default UDP and TCP on a free
    loopback port. Plugin objects are registered directly, without entry points.
    """
    from sipline.config import build_config
    from sipline.plugins import build_plugin_manager
    from sipline.routing.default import CoreDefaults

    toml = dict(toml or {})
    server = dict(toml.get("server", {}))
    if "listen" not in server:
        port = free_port()
        server["listen"] = [f"udp:127.0.0.1:{port}", f"tcp:127.0.0.1:{port}"]
    plugins = plugins or []
    server.setdefault("plugins", [name for name, _ in plugins])
    toml["server"] = server
    objects = dict(plugins)

    def model_for(name: str) -> Any:
        obj = objects.get(name)
        fn = getattr(obj, "config_model", None)
        return fn() if fn else None

    config = build_config(toml, installed_plugins=list(objects), model_for=model_for)
    pm = build_plugin_manager(plugins, defaults=CoreDefaults(), script=script)
    srv = InProcessServer(config, pm).start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def sipline_process(tmp_path: Path) -> Iterator[Any]:
    """Factory: ``sipline_process(config_text, probe=(host, port))`` -> started ServerProcess."""
    started: list[ServerProcess] = []

    def factory(config_text: str, probe: tuple[str, int] | None = None, **kw: Any) -> ServerProcess:
        workdir = tmp_path / f"server{len(started)}"
        workdir.mkdir()
        proc = ServerProcess(config_text, workdir, **kw)
        started.append(proc)
        return proc.start(probe)

    yield factory
    for proc in started:
        proc.stop()


@pytest.fixture
def sip_client() -> Iterator[Any]:
    """Factory: ``sip_client((host, port), proto="udp")`` -> SipClient, closed after the test."""
    clients: list[SipClient] = []

    def factory(server: tuple[str, int], proto: str = "udp", timeout: float = 3.0) -> SipClient:
        client = SipClient(server, proto, timeout)
        clients.append(client)
        return client

    yield factory
    for c in clients:
        c.close()


# ------------------------------------------------------------------ databases

#: A PostgreSQL server to use instead of starting one: a SQLAlchemy URL whose
#: user may create databases (``postgresql+psycopg://user:pw@host:5432/postgres``).
POSTGRESQL_URL_ENV = "SIPLINE_TEST_POSTGRESQL_URL"
PG_SUPERUSER = "sipline"


class PostgresUnavailable(Exception):
    """No PostgreSQL server can be started here; the message says why."""


def find_postgresql_bin() -> Path | None:
    """The folder of ``initdb`` and ``pg_ctl``: on PATH, else Debian's or RHEL's layout."""
    found = shutil.which("pg_ctl")
    if found and shutil.which("initdb"):
        return Path(found).resolve().parent

    def version(path: str) -> tuple[int, ...]:
        digits = "".join(c if c.isdigit() else " " for c in path).split()
        return tuple(int(d) for d in digits)

    for pattern in ("/usr/lib/postgresql/*/bin", "/usr/pgsql-*/bin"):
        for folder in sorted(glob.glob(pattern), key=version, reverse=True):
            if os.path.exists(os.path.join(folder, "initdb")):
                return Path(folder)
    return None


class PostgresCluster:
    """A throwaway PostgreSQL server: ``initdb`` into a temp dir, ``pg_ctl start`` on a
    free loopback port (as the ``postgres`` user when running as root, which PostgreSQL
    refuses), fsync off; :meth:`stop` ends it by PID and removes the files.

    Or, with ``url``, an existing server given by :data:`POSTGRESQL_URL_ENV`.
    """

    def __init__(self, url: str | None = None) -> None:
        self.external = url
        self.port = 0
        self.datadir: Path | None = None
        self.pid: int | None = None

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> PostgresCluster:
        try:
            import psycopg  # noqa: F401
        except ImportError:
            raise PostgresUnavailable(
                "the psycopg driver is not installed (pip install 'psycopg[binary]')"
            ) from None
        if self.external:
            self._admin().close()  # reachable?
            return self
        bindir = find_postgresql_bin()
        if bindir is None:
            raise PostgresUnavailable(
                "initdb/pg_ctl not found (apt-get install postgresql, or set "
                f"{POSTGRESQL_URL_ENV})"
            )
        prefix: list[str] = []
        owner = None
        if os.geteuid() == 0:
            import pwd

            for name in ("postgres", "nobody"):
                try:
                    owner = pwd.getpwnam(name)
                    break
                except KeyError:
                    continue
            runuser = shutil.which("runuser")
            if owner is None or runuser is None:
                raise PostgresUnavailable("running as root and no 'postgres' user or runuser")
            prefix = [runuser, "-u", owner.pw_name, "--"]
        self.datadir = Path(tempfile.mkdtemp(prefix="sipline-pg-"))
        if owner is not None:
            os.chown(self.datadir, owner.pw_uid, owner.pw_gid)
        self.port = free_port()
        env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
        log = self.datadir / "server.log"
        init = subprocess.run(
            [*prefix, str(bindir / "initdb"), "-D", str(self.datadir / "data"),
             "-U", PG_SUPERUSER, "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync"],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env, timeout=120,
        )
        if init.returncode != 0:
            self._cleanup()
            raise PostgresUnavailable(f"initdb failed: {init.stderr.strip()[-500:]}")
        options = (f"-p {self.port} -h {LOOPBACK4} -k {self.datadir} -F "
                   "-c full_page_writes=off -c synchronous_commit=off")
        with open(os.devnull, "wb") as devnull:
            started = subprocess.run(
                [*prefix, str(bindir / "pg_ctl"), "-D", str(self.datadir / "data"),
                 "-l", str(log), "-w", "-t", "60", "-o", options, "start"],
                stdin=subprocess.DEVNULL, stdout=devnull, stderr=devnull, env=env,
                timeout=120,
            )
        pidfile = self.datadir / "data" / "postmaster.pid"
        if started.returncode != 0 or not pidfile.exists():
            reason = log.read_text(errors="replace").strip()[-500:] if log.exists() else ""
            self.stop()
            raise PostgresUnavailable(f"pg_ctl start failed: {reason}")
        self.pid = int(pidfile.read_text().split("\n", 1)[0])
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Fast shutdown by PID (SIGINT), then remove the cluster's files."""
        pid, self.pid = self.pid, None
        if pid is not None:
            try:
                os.kill(pid, signal.SIGINT)
                deadline = time.monotonic() + timeout
                while time.monotonic() < deadline and _running(pid):
                    time.sleep(0.05)
                if _running(pid):
                    os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self._cleanup()

    def _cleanup(self) -> None:
        if self.datadir is not None:
            shutil.rmtree(self.datadir, ignore_errors=True)
            self.datadir = None

    # -- databases -------------------------------------------------------------------
    def url(self, database: str) -> str:
        """The SQLAlchemy URL of ``database`` on this server."""
        if self.external:
            from sqlalchemy.engine import make_url

            return make_url(self.external).set(database=database).render_as_string(
                hide_password=False
            )
        return f"postgresql+psycopg://{PG_SUPERUSER}@{LOOPBACK4}:{self.port}/{database}"

    def _admin(self) -> Any:
        import psycopg
        from sqlalchemy.engine import make_url

        url = make_url(self.url("postgres"))
        try:
            return psycopg.connect(
                host=url.host, port=url.port or 5432, user=url.username,
                password=url.password, dbname=url.database, autocommit=True, connect_timeout=10,
            )
        except psycopg.Error as exc:
            raise PostgresUnavailable(f"cannot connect to {make_url(self.url('postgres'))!r}: "
                                      f"{exc}") from exc

    def create_database(self) -> str:
        """A new empty database; returns its URL."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        with self._admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, url: str) -> None:
        from sqlalchemy.engine import make_url

        name = make_url(url).database
        with self._admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie (the postmaster is not our child)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


@pytest.fixture(scope="session")
def postgresql_cluster() -> Iterator[PostgresCluster]:
    """A PostgreSQL server for the session: ``$SIPLINE_TEST_POSTGRESQL_URL``, else one
    started from the installed binaries. Skips (saying why) when neither works."""
    cluster = PostgresCluster(os.environ.get(POSTGRESQL_URL_ENV) or None)
    try:
        cluster.start()
    except (PostgresUnavailable, OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"PostgreSQL tests skipped: no PostgreSQL server could be started: {exc}")
    yield cluster
    if not cluster.external:
        cluster.stop()


@pytest.fixture
def postgresql_url(postgresql_cluster: PostgresCluster) -> Iterator[str]:
    """A fresh empty database on the session's PostgreSQL server (dropped afterwards).

    Name it before the fixtures that start servers on it, so that they stop first.
    """
    url = postgresql_cluster.create_database()
    yield url
    _dispose_engines(url)
    postgresql_cluster.drop_database(url)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> Iterator[str]:
    """A SQLite file in the test's tmp dir (created on first use)."""
    url = f"sqlite:///{tmp_path / 'sipline.db'}"
    yield url
    _dispose_engines(url)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    """The test runs twice: on a SQLite file and on a fresh PostgreSQL database."""
    return str(request.getfixturevalue(f"{request.param}_url"))


def _dispose_engines(url: str) -> None:
    from sipline import db

    for key, engine in list(db._engines.items()):
        if key.endswith(f" {url}"):
            engine.dispose()
            del db._engines[key]


def schema_diff(url: str, metadata: Any) -> list[Any]:
    """Alembic autogenerate's differences between ``metadata`` and the database, limited
    to the tables ``metadata`` declares (other plugins' tables are not its business)."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    tables = set(metadata.tables)

    def include_name(name: str | None, type_: str, _parents: Any) -> bool:
        return type_ != "table" or name in tables

    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"include_name": include_name, "compare_type": True}
            )
            return list(compare_metadata(context, metadata))
    finally:
        engine.dispose()


def assert_schema_matches(url: str, metadata: Any) -> None:
    """Fail with the differences when the migrated schema and the models disagree."""
    diff = schema_diff(url, metadata)
    assert diff == [], f"models and migrations differ: {diff}"


def table_names(url: str) -> set[str]:
    from sqlalchemy import create_engine, inspect
    from sqlalchemy.pool import NullPool

    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return set(inspect(conn).get_table_names())
    finally:
        engine.dispose()


def migration_round_trip(url: str, branch: str, metadata: Any,
                         tables: Collection[str] | None = None) -> None:
    """The per-plugin migration test: upgrade every branch to its head, no difference
    between the models and the schema, downgrade ``branch`` to its base (its tables go,
    the others' stay), upgrade again, still no difference."""
    from sipline import db

    tables = set(tables if tables is not None else metadata.tables)
    db.upgrade(url, "heads")
    status = db.schema_status(url)
    assert status.behind() == [], status
    assert tables <= table_names(url)
    assert_schema_matches(url, metadata)
    before = table_names(url)
    db.downgrade(url, f"{branch}@base")
    after = table_names(url)
    assert after == before - tables, f"downgrade {branch}@base left {after & tables}"
    assert [b.name for b in db.schema_status(url).behind()] == [branch]
    db.upgrade(url, "heads")
    assert db.schema_status(url).behind() == []
    assert_schema_matches(url, metadata)
