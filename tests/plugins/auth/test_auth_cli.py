"""``sipline user ...`` as real subprocesses against temporary SQLite files, and a running
``sipline run`` that picks the changes up within the documented time."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from authkit import authorization, pick, register
from sipline.testing import ServerProcess, SipClient, free_port


def sipline(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sipline", *args], input=stdin,
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def conf(tmp_path) -> Path:
    path = tmp_path / "sipline.toml"
    path.write_text(f'[server]\ndata_dir = "{tmp_path / "data"}"\n')
    return path


def test_add_list_passwd_rm(conf):
    c = str(conf)
    out = sipline("user", "add", "alice@Example.COM", "wonderland", "-c", c)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "added alice@example.com"
    assert "auth_0001" in out.stderr  # the embedded SQLite was upgraded on the way
    assert sipline("user", "-c", c, "add", "bob@example.com", "builder").returncode == 0
    again = sipline("user", "add", "alice@example.com", "x", "-c", c)
    assert again.returncode == 5 and "already exists" in again.stderr
    listed = sipline("user", "list", "-c", c)
    assert listed.stdout.splitlines() == ["alice@example.com", "bob@example.com"]
    # the password from standard input (keeps it out of `ps`)
    changed = sipline("user", "passwd", "alice@example.com", "-c", c, stdin="newer\n")
    assert changed.returncode == 0, changed.stderr
    assert sipline("user", "passwd", "nobody@example.com", "x", "-c", c).returncode == 5
    assert sipline("user", "rm", "alice@example.com", "-c", c).returncode == 0
    gone = sipline("user", "rm", "alice@example.com", "-c", c)
    assert gone.returncode == 5 and "no such user" in gone.stderr
    assert sipline("user", "list", "example.com", "-c", c).stdout.splitlines() == [
        "bob@example.com"]


def test_rows_follow_the_opensips_layout(conf, tmp_path):
    import sqlite3

    conf.write_text(conf.read_text() + "[plugins.auth]\nstore_password = true\n")
    assert sipline("user", "add", "alice@example.com", "wonderland", "-c", str(conf)).returncode == 0
    with sqlite3.connect(tmp_path / "data" / "sipline.db") as conn:
        row = conn.execute("SELECT username, domain, password, ha1, ha1_sha256, ha1_sha512t256 "
                           "FROM subscriber").fetchone()
    import hashlib

    a1 = b"alice:example.com:wonderland"
    assert row == ("alice", "example.com", "wonderland", hashlib.md5(a1).hexdigest(),
                   hashlib.sha256(a1).hexdigest(), hashlib.new("sha512_256", a1).hexdigest())


def test_schema_behind_without_auto_upgrade_says_what_to_run(tmp_path):
    conf = tmp_path / "s.toml"
    conf.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "x.db"}"\nauto_upgrade = false\n')
    out = sipline("user", "list", "-c", str(conf))
    assert out.returncode == 4
    assert f"sipline db upgrade -c {conf}" in out.stderr
    assert sipline("db", "upgrade", "-c", str(conf)).returncode == 0
    assert sipline("user", "add", "a@b.c", "pw", "-c", str(conf)).returncode == 0


def test_bad_address_is_a_usage_error(conf):
    out = sipline("user", "add", "no-domain", "pw", "-c", str(conf))
    assert out.returncode == 2 and "USER@DOMAIN" in out.stderr


# --------------------------------------------------------------- a running server

LOOKUP_INTERVAL = 1.0
RELOAD_INTERVAL = 2.0
TIMER = 1.0  # [server] timer_interval default


def attempt(port: int, user: str, password: str) -> int:
    """One REGISTER challenge/answer round; the final status."""
    c = SipClient(("127.0.0.1", port))
    try:
        hostport = f"127.0.0.1:{port}"
        call_id = uuid.uuid4().hex
        first = c.request(register(hostport, c.local_hostport, user, call_id=call_id))
        if first.status != 401:
            return first.status
        creds = authorization(pick(first), "REGISTER", f"sip:{hostport}", user, password)
        return c.request(register(hostport, c.local_hostport, user, call_id=call_id, cseq=2,
                                  auth=creds)).status
    finally:
        c.close()


def until(port: int, user: str, password: str, status: int, within: float) -> float:
    """Seconds until a REGISTER round ends with ``status``; fails after ``within``."""
    started = time.monotonic()
    while True:
        got = attempt(port, user, password)
        elapsed = time.monotonic() - started
        if got == status:
            return elapsed
        assert elapsed < within, f"still {got} after {elapsed:.1f}s (expected {status})"
        time.sleep(0.1)


def test_running_server_picks_up_user_changes(tmp_path):
    port = free_port()
    db = tmp_path / "sipline.db"
    config = (
        f'[server]\nlisten = ["udp:127.0.0.1:{port}"]\nplugins = ["auth", "registrar"]\n'
        f'[database]\nurl = "sqlite:///{db}"\nauto_upgrade = true\n'
        f'[plugins.auth]\nsecret = "{"x" * 32}"\n'
        f"reload_interval = {RELOAD_INTERVAL}\nlookup_interval = {LOOKUP_INTERVAL}\n"
    )
    server = ServerProcess(config, tmp_path).start(probe=("127.0.0.1", port))
    conf = str(server.config_path)
    try:
        assert attempt(port, "dave", "pw1") == 401  # unknown (and now looked up)
        assert sipline("user", "add", "dave@127.0.0.1", "pw1", "-c", conf).returncode == 0
        # documented: a new user at the next attempt, or within lookup_interval when
        # that user was looked up just before (as here)
        assert until(port, "dave", "pw1", 200, within=LOOKUP_INTERVAL + 1) <= LOOKUP_INTERVAL + 1
        assert sipline("user", "passwd", "dave@127.0.0.1", "pw2", "-c", conf).returncode == 0
        until(port, "dave", "pw2", 200, within=LOOKUP_INTERVAL + 1)
        assert attempt(port, "dave", "pw1") == 401
        # removed: within reload_interval (+ one timer tick)
        assert sipline("user", "rm", "dave@127.0.0.1", "-c", conf).returncode == 0
        until(port, "dave", "pw2", 401, within=RELOAD_INTERVAL + TIMER + 1)
    finally:
        assert server.stop() == 0, server.log()
