"""End to end with SIPp: digest REGISTER, an authenticated call between two registered UAs,
wrong passwords, an expired nonce, and replayed credentials, against ``sipline run``.

sipline runs as a real subprocess with ``plugins = ["auth", "registrar"]`` and a
SQLite file filled by ``sipline user add``. The SIPp peers use the scenarios in
``scenarios/``; what is asserted comes from SIPp's exit codes (the scenarios'
``check_it`` expressions included) and from its message traces.

SIPp 3.6 answers only the first challenge of a 401/407 and only MD5, so these
servers offer MD5 first (``algorithms = ["MD5", "SHA-256", "SHA-512-256"]``); the
SHA algorithms are tested in-process (test_auth_server.py).
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from sipline.sip import parse_message
from sipline.testing import ServerProcess, free_port

SCENARIOS = Path(__file__).parent / "scenarios"
LOOPBACK = "127.0.0.1"
USERS = {"alice": "wonderland", "bob": "builder"}

pytestmark = pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp is not installed")


class Peer:
    """One SIPp process on its own port, with its message trace; stopped by PID."""

    def __init__(self, workdir: Path, name: str, scenario: str, *args: str,
                 port: int | None = None) -> None:
        self.name = name
        self.port = port or free_port()
        self.trace = workdir / f"{name}_messages.log"
        self.errors = workdir / f"{name}_errors.log"
        self.out = workdir / f"{name}.out"
        self.cmd = ["sipp", "-sf", str(SCENARIOS / scenario), "-i", LOOPBACK,
                    "-p", str(self.port), "-m", "1", "-nostdin", "-timeout", "20s",
                    "-timeout_error", "-trace_msg", "-message_file", str(self.trace),
                    "-trace_err", "-error_file", str(self.errors), *args]
        with open(self.out, "wb") as out:
            self.proc = subprocess.Popen(self.cmd, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, cwd=workdir)

    def wait_bound(self, timeout: float = 5.0) -> Peer:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                try:
                    s.bind((LOOPBACK, self.port))
                except OSError:
                    return self  # sipp holds the port
            assert self.proc.poll() is None, self.report()
            time.sleep(0.02)
        raise AssertionError(f"{self.name} did not bind its port\n{self.report()}")

    def wait(self, timeout: float = 30.0) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise AssertionError(f"{self.name} still running\n{self.report()}") from None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def report(self) -> str:
        def read(p: Path) -> str:
            return p.read_text(errors="replace")[-3000:] if p.exists() else ""
        return (f"--- {self.name}: {' '.join(self.cmd)}\n--- errors:\n{read(self.errors)}\n"
                f"--- trace:\n{read(self.trace)}")

    def messages(self, sent: bool) -> list:
        """The messages this peer sent (or received), parsed, in order."""
        text = self.trace.read_text(errors="replace")
        blocks = re.split(r"-{20,} \d{4}-\d\d-\d\d[^\n]*\n", text)
        out = []
        for block in blocks:
            first, _, rest = block.partition("\n")
            if ("message sent" in first) != sent or "message" not in first:
                continue
            data = re.sub(r"\r?\n", "\r\n", rest.strip("\r\n") + "\n\n")
            out.append(parse_message(data.encode("latin-1")))
        return out


class Net:
    """sipline with auth + registrar, and the SIPp peers of one test."""

    def __init__(self, tmp: Path, **auth: str) -> None:
        self.tmp = tmp
        self.port = free_port()
        self.hostport = f"{LOOPBACK}:{self.port}"
        self.peers: list[Peer] = []
        settings = "".join(f"{k} = {v}\n" for k, v in auth.items())
        config = (
            f'[server]\nlisten = ["udp:{self.hostport}"]\nplugins = ["auth", "registrar"]\n'
            f'[database]\nurl = "sqlite:///{tmp / "sipline.db"}"\nauto_upgrade = true\n'
            f'[plugins.auth]\nsecret = "{"e2e" * 8}"\n'
            'algorithms = ["MD5", "SHA-256", "SHA-512-256"]\n' + settings
        )
        self.server = ServerProcess(config, tmp)
        for user, password in USERS.items():  # as an operator would, before starting
            done = subprocess.run(
                [sys.executable, "-m", "sipline", "user", "add", f"{user}@{LOOPBACK}", password,
                 "-c", str(self.server.config_path)], capture_output=True, text=True, timeout=60)
            assert done.returncode == 0, done.stderr
        self.server.start(probe=(LOOPBACK, self.port))

    def peer(self, name: str, scenario: str, *args: str, remote: bool = True,
             port: int | None = None) -> Peer:
        p = Peer(self.tmp, name, scenario, *args, *([self.hostport] if remote else []),
                 port=port)
        self.peers.append(p)
        return p

    def run(self, name: str, scenario: str, *args: str, port: int | None = None) -> Peer:
        """Run a SIPp client to its end; fail with its logs unless it succeeded."""
        p = self.peer(name, scenario, *args, port=port)
        code = p.wait()
        assert code == 0, f"{name} exited {code}\n{p.report()}\n--- sipline:\n{self.server.log()[-3000:]}"
        return p

    def register(self, user: str, password: str, contact_port: int, scenario="register.xml",
                 *args: str) -> Peer:
        return self.run(f"register_{user}_{len(self.peers)}", scenario, "-s", user, "-au", user,
                        "-ap", password, "-key", "contact_port", str(contact_port), *args)

    def close(self) -> None:
        for p in self.peers:
            p.stop()
        assert self.server.stop() == 0, self.server.log()


@pytest.fixture
def net(tmp_path):
    made: list[Net] = []

    def make(**auth: str) -> Net:
        n = Net(tmp_path, **auth)
        made.append(n)
        return n

    yield make
    for n in made:
        n.close()


def send_and_wait(hostport: str, data: bytes, timeout: float = 3.0):
    host, port = hostport.rsplit(":", 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((LOOPBACK, 0))
        s.settimeout(timeout)
        local = f"{LOOPBACK}:{s.getsockname()[1]}"
        data = re.sub(rb"Via: [^\r\n]*",
                      f"Via: SIP/2.0/UDP {local};branch=z9hG4bK{uuid.uuid4().hex[:12]};rport"
                      .encode(), data, count=1)
        s.sendto(data, (host, int(port)))
        while True:
            resp = parse_message(s.recvfrom(65535)[0])
            if resp.status >= 200:
                return resp


def test_register_and_call_between_registered_uas(net):
    n = net()
    callee = n.peer("bob_phone", "answer.xml", "-s", "bob", remote=False).wait_bound()
    caller_port = free_port()
    n.register("bob", "builder", callee.port)
    reg = n.register("alice", "wonderland", caller_port)
    caller = n.run("alice_phone", "call_auth.xml", "-s", "bob", "-au", "alice", "-ap",
                   "wonderland", "-key", "caller", "alice", port=caller_port)
    assert callee.wait() == 0, callee.report()

    # the caller was challenged once with 407, then got the call through
    got = [(m.status, m.cseq.method) for m in caller.messages(sent=False) if m.status >= 200]
    assert got == [(407, "INVITE"), (200, "INVITE"), (200, "BYE")]
    invites = [m for m in caller.messages(sent=True) if getattr(m, "method", "") == "INVITE"]
    assert (invites[1].get("Proxy-Authorization") or "").startswith('Digest username="alice"')
    # the callee got the INVITE without the credentials (consumed by sipline)
    received = [m for m in callee.messages(sent=False) if getattr(m, "method", "") == "INVITE"]
    assert len(received) == 1 and not received[0].has("Proxy-Authorization")

    # the REGISTER alice's UA authenticated with, sent again (same nonce, same nc) from
    # elsewhere in a new transaction: refused with a fresh challenge
    sent = [m for m in reg.messages(sent=True) if m.has("Authorization")]
    replayed = send_and_wait(n.hostport, sent[0].to_bytes())
    assert replayed.status == 401
    assert "stale" not in " ".join(replayed.get_all("WWW-Authenticate"))
    # and so is the caller's authenticated INVITE
    invite = send_and_wait(n.hostport, invites[1].to_bytes())
    assert invite.status == 407


def test_wrong_password_is_challenged_again(net):
    n = net()
    n.register("alice", "not-the-password", free_port(), "register_wrong.xml")
    n.run("alice_phone", "call_wrong.xml", "-s", "bob", "-au", "alice", "-ap", "nope",
          "-key", "caller", "alice")


def test_expired_nonce_gets_stale_true(net):
    n = net(nonce_expires="1")
    p = n.run("alice_phone", "register_stale.xml", "-s", "alice", "-au", "alice", "-ap",
              "wonderland")  # the scenario waits 2.5 s before answering
    finals = [m for m in p.messages(sent=False) if m.status >= 200]
    assert [m.status for m in finals] == [401, 401, 200]
    assert "stale=true" not in finals[0].get("WWW-Authenticate")
    assert all("stale=true" in v for v in finals[1].get_all("WWW-Authenticate"))
