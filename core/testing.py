"""Test helpers and pytest fixtures for sipline and its plugins.

Shipped with the core (``pytest11`` entry point ``sipline``) so that plugin
distributions test against a real server the same way the core does:

- :func:`free_port` picks a loopback port free for both UDP and TCP;
- :class:`SipClient` is a raw SIP client socket (UDP or TCP) on loopback;
- :class:`ServerProcess` runs ``sipline run`` as a real subprocess and stops it by PID;
- :func:`inprocess_server` runs a :class:`~sipline.server.Server` in a thread,
  with plugin objects passed directly (for hook tests);
- :func:`options_request` builds a valid OPTIONS request.

Fixtures: ``sipline_process`` (factory of ServerProcess), ``sip_client``
(factory of SipClient); both clean up after the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
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
