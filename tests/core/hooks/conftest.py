"""Fixtures of the hook tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from sipline.testing import InProcessServer, SipClient


@pytest.fixture
def client_for() -> Iterator[Callable[..., SipClient]]:
    """Factory: ``client_for(srv, proto="udp")`` -> a SipClient to the server, closed after."""
    clients: list[SipClient] = []

    def factory(srv: InProcessServer, proto: str = "udp", timeout: float = 3.0) -> SipClient:
        client = SipClient(srv.address(proto), proto, timeout)
        clients.append(client)
        return client

    yield factory
    for client in clients:
        client.close()
