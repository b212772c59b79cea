"""Bindings survive a restart: real ``sipline run`` processes, a real SQLite file (the embedded
default in the data dir, auto-upgraded) and a real PostgreSQL server (``sipline db upgrade``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

import pytest
from sqlalchemy import create_engine, func, select
from sqlalchemy.pool import NullPool

from sipline.sip import parse_message
from sipline.testing import ServerProcess, SipClient, free_port
from sipline_registrar.models import location
from test_registrar import contact_uris, invite, phone, register


class Deployment:
    """One configuration (and database) run by successive server processes."""

    def __init__(self, tmp_path, backend: str, mode: str, extra: str = "") -> None:
        self.tmp_path = tmp_path
        self.port = free_port()
        self.data_dir = tmp_path / "data"
        self.runs = 0
        self.procs: list[ServerProcess] = []
        if backend == "sqlite":  # the embedded default: auto_upgrade is on
            self.url = f"sqlite:///{self.data_dir / 'sipline.db'}"
            database = ""
        else:
            self.url = backend
            database = f'[database]\nurl = "{backend}"\n'
        self.config = (
            f'[server]\nlisten = ["udp:127.0.0.1:{self.port}"]\nplugins = ["registrar"]\n'
            f"timer_interval = 0.1\n{database}"
            f'[plugins.registrar]\ndb_mode = "{mode}"\n{extra}'
        )

    def start(self) -> ServerProcess:
        workdir = self.tmp_path / f"run{self.runs}"
        workdir.mkdir()
        self.runs += 1
        proc = ServerProcess(self.config, workdir, env={"SIPLINE_DATA_DIR": str(self.data_dir)})
        self.procs.append(proc)
        return proc.start(probe=("127.0.0.1", self.port))

    def sipline(self, *args: str) -> subprocess.CompletedProcess[str]:
        config = self.tmp_path / "sipline.toml"
        config.write_text(self.config)
        return subprocess.run([sys.executable, "-m", "sipline", *args, "-c", str(config)],
                              capture_output=True, text=True, timeout=60,
                              env={**os.environ, "SIPLINE_DATA_DIR": str(self.data_dir)})

    def rows(self) -> int:
        engine = create_engine(self.url, poolclass=NullPool)
        try:
            with engine.connect() as conn:
                return int(conn.execute(select(func.count()).select_from(location)).scalar_one())
        finally:
            engine.dispose()

    def stop_all(self) -> None:
        for proc in self.procs:
            proc.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request) -> str:
    if request.param == "sqlite":
        return "sqlite"
    return str(request.getfixturevalue("postgresql_url"))


@pytest.fixture
def deployments(tmp_path):
    made: list[Deployment] = []

    def factory(backend: str, mode: str, extra: str = "") -> Deployment:
        d = Deployment(tmp_path / f"d{len(made)}", backend, mode, extra)
        d.tmp_path.mkdir()
        made.append(d)
        return d

    yield factory
    for d in made:
        d.stop_all()


def relayed_to(callee, client: SipClient) -> str:
    client.send(invite(client))
    got = parse_message(callee.recvfrom(65535)[0])
    assert got.method == "INVITE"
    return got.raw_uri


@pytest.mark.parametrize("mode", ["write-through", "write-back"])
def test_bindings_survive_a_restart(deployments, backend, mode):
    d = deployments(backend, mode)
    if backend != "sqlite":  # an explicit URL: the operator migrates, run refuses before
        out = d.sipline("db", "upgrade")
        assert out.returncode == 0, out.stderr
    callee = phone()
    contact = f"sip:alice@127.0.0.1:{callee.getsockname()[1]}"
    try:
        first = d.start()
        c = SipClient(("127.0.0.1", d.port))
        assert c.request(register(c, [f"<{contact}>"], expires=600)).status == 200
        c.close()
        assert first.stop() == 0, first.log()
        assert d.rows() == 1

        second = d.start()
        c = SipClient(("127.0.0.1", d.port))
        fetched = c.request(register(c, []))
        assert contact_uris(fetched) == [contact]
        assert 590 <= int(fetched.contacts[0].params["expires"]) <= 600
        assert relayed_to(callee, c) == contact
        c.close()
        assert second.stop() == 0, second.log()
    finally:
        callee.close()


def test_write_back_survives_a_crash_after_its_interval(deployments):
    d = deployments("sqlite", "write-back", "write_back_interval = 0.3\n")
    proc = d.start()
    c = SipClient(("127.0.0.1", d.port))
    assert c.request(register(c, ["<sip:alice@127.0.0.1:6001>"])).status == 200
    c.close()
    deadline = time.monotonic() + 10
    while d.rows() == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert d.rows() == 1  # the periodic flush, not the shutdown flush, wrote it
    proc.stop(signal.SIGKILL)
    d.start()
    c = SipClient(("127.0.0.1", d.port))
    assert contact_uris(c.request(register(c, []))) == ["sip:alice@127.0.0.1:6001"]
    c.close()


def test_sql_only_servers_share_the_table(deployments, backend):
    """Two servers on one database: a REGISTER at one is routed by the other (and by a
    restarted one)."""
    a = deployments(backend, "sql-only")
    if backend != "sqlite":
        assert a.sipline("db", "upgrade").returncode == 0
    b = deployments(backend, "sql-only")
    b.data_dir, b.url = a.data_dir, a.url
    callee = phone()
    contact = f"sip:alice@127.0.0.1:{callee.getsockname()[1]}"
    try:
        a.start()
        b.start()
        ca = SipClient(("127.0.0.1", a.port))
        assert ca.request(register(ca, [f"<{contact}>"], call_id=uuid.uuid4().hex)).status == 200
        ca.close()
        cb = SipClient(("127.0.0.1", b.port))
        assert relayed_to(callee, cb) == contact
        cb.close()
    finally:
        callee.close()


def test_run_refuses_a_schema_that_is_behind(deployments, postgresql_url):
    d = deployments(postgresql_url, "write-through")
    workdir = d.tmp_path / "refused"
    workdir.mkdir()
    proc = ServerProcess(d.config, workdir).start()
    assert proc.proc is not None
    assert proc.proc.wait(30) == 4
    log = proc.log()
    assert "database schema is behind: registrar" in log
    assert f"run `sipline db upgrade -c {workdir / 'sipline.toml'}`" in log
    proc.stop()
