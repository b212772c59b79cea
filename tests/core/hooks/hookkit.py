"""Helpers of the hook tests: SIP messages, polling, a bare Server.

Imported by the test modules next to it (``from hookkit import ...``).
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from sipline.config import build_config
from sipline.plugins import build_plugin_manager
from sipline.routing.default import CoreDefaults
from sipline.server import Server, StartupError
from sipline.testing import InProcessServer, SipClient, options_request


def sip_request(srv: InProcessServer, client: SipClient, method: str = "OPTIONS", **kw: Any) -> bytes:
    """A valid request for ``method`` to the in-process server, from ``client``.

    Built from :func:`options_request` so that only the method differs: the
    start line and the CSeq both name ``method``.
    """
    host, port = srv.address(client.proto)
    data = options_request(f"{host}:{port}", local=client.local_hostport, **kw)
    if method != "OPTIONS":
        data = data.replace(b"OPTIONS ", f"{method} ".encode(), 1)
        data = data.replace(b"CSeq: 1 OPTIONS", f"CSeq: 1 {method}".encode(), 1)
    return data


def sip_response(client: SipClient, status: int = 200, reason: str = "OK") -> bytes:
    """A response a UAS would send back, addressed (Via) to ``client``."""
    return (
        f"SIP/2.0 {status} {reason}\r\n"
        f"Via: SIP/2.0/UDP {client.local_hostport};branch=z9hG4bK{uuid.uuid4().hex[:16]}\r\n"
        f"From: <sip:alice@example.org>;tag=a1\r\n"
        f"To: <sip:bob@example.org>;tag=b2\r\n"
        f"Call-ID: {uuid.uuid4().hex}\r\n"
        f"CSeq: 1 INVITE\r\n"
        f"Content-Length: 0\r\n\r\n"
    ).encode()


def assert_next_answers(client: SipClient, srv: InProcessServer, status: int = 200) -> None:
    """Send an OPTIONS and check that the very next message is its answer.

    Used after something that must stay unanswered: had the server answered
    it, that answer would arrive first (loopback keeps datagram order and the
    server handles messages one after the other), so no sleep is needed.
    """
    call_id = uuid.uuid4().hex
    client.send(sip_request(srv, client, call_id=call_id))
    from sipline.sip import parse_message

    answer = parse_message(client.recv(3.0))
    assert answer.get("call-id") == call_id, f"unexpected message first: {answer!r}"
    assert answer.status == status


def bare_server(plugins: list[tuple[str, Any]], toml: dict[str, Any] | None = None) -> Server:
    """A configured Server that is not started (listeners on port 0 if started)."""
    toml = dict(toml or {})
    server_section = {
        "listen": ["udp:127.0.0.1:0"],
        "plugins": [name for name, _ in plugins],
        **toml.get("server", {}),
    }
    toml["server"] = server_section
    objects = dict(plugins)

    def model_for(name: str) -> Any:
        fn = getattr(objects.get(name), "config_model", None)
        return fn() if fn else None

    config = build_config(toml, installed_plugins=list(objects), model_for=model_for)
    return Server(config, build_plugin_manager(plugins, defaults=CoreDefaults()))


def start_fails(plugins: list[tuple[str, Any]], toml: dict[str, Any] | None = None) -> StartupError:
    """Start a server in a private event loop and return the StartupError it raised.

    ``inprocess_server`` is not used here: its context manager does not stop
    its loop thread when ``start()`` raises.
    """
    server = bare_server(plugins, toml)

    async def run() -> None:
        try:
            await server.start()
        finally:
            await server.stop()

    with pytest.raises(StartupError) as info:
        asyncio.run(run())
    return info.value
