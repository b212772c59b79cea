"""The UDP listener: delivery, a failing handler, ICMP errors and closing, on real sockets."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from sipline.transport import UdpTransport


@contextlib.contextmanager
def peers(count: int = 1, timeout: float | None = None) -> Iterator[list[socket.socket]]:
    """``count`` UDP sockets bound on loopback, closed afterwards."""
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind(("127.0.0.1", 0))
            sock.settimeout(timeout)
            socks.append(sock)
        yield socks
    finally:
        for sock in socks:
            sock.close()


@contextlib.asynccontextmanager
async def listening(
    handler: Callable[[bytes, Any], None] = lambda data, source: None,
) -> AsyncIterator[UdpTransport]:
    """A started listener on a free loopback port, stopped afterwards."""
    transport = UdpTransport("127.0.0.1", 0, handler)
    await transport.start()
    try:
        yield transport
    finally:
        await transport.stop()


async def until(condition: Callable[[], object], timeout: float = 1.0) -> None:
    """Let the loop run until ``condition()`` holds (or ``timeout``: the asserts then tell)."""
    for _ in range(int(timeout / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)


def test_datagrams_are_delivered_in_order_with_their_source():
    async def scenario():
        got = []
        async with listening(lambda data, source: got.append((data, source))) as transport:
            with peers() as (sender,):
                for i in range(50):
                    sender.sendto(b"msg %d" % i, transport.local)
                await until(lambda: len(got) == 50)
                assert [data for data, _ in got] == [b"msg %d" % i for i in range(50)]
                source = got[0][1]
                assert source.proto == "udp" and not source.reliable
                assert source.remote == sender.getsockname()
                assert source.local == transport.local and source.transport is transport

    asyncio.run(scenario())


def test_a_failing_handler_does_not_stop_the_listener():
    async def scenario():
        got = []

        def handler(data, source):
            if data == b"boom":
                raise RuntimeError("handler bug")
            got.append(data)

        async with listening(handler) as transport:
            with peers() as (sender,):
                sender.sendto(b"boom", transport.local)
                sender.sendto(b"after", transport.local)
                await until(lambda: got)
                assert got == [b"after"]

    asyncio.run(scenario())


def test_an_icmp_error_of_a_send_does_not_stop_the_listener():
    async def scenario():
        got = []
        async with listening(lambda data, source: got.append(data)) as transport:
            with peers(2) as (closed, sender):
                dead = closed.getsockname()
                closed.close()  # nothing listens there: the send draws ICMP port unreachable
                assert transport.send(b"to nobody", dead)
                await asyncio.sleep(0.05)
                sender.sendto(b"still here", transport.local)
                await until(lambda: got)
                assert got == [b"still here"]

    asyncio.run(scenario())


def test_stop_frees_the_port_and_sends_fail_cleanly():
    async def scenario():
        async with listening() as transport:
            port = transport.port
        assert transport.send(b"x", ("127.0.0.1", 9)) is False
        again = UdpTransport("127.0.0.1", port, lambda data, source: None)
        await again.start()  # would raise EADDRINUSE if the socket were still open
        await again.stop()

    asyncio.run(scenario())


def test_sends_of_one_round_leave_together_in_order():
    async def scenario():
        async with listening() as transport:
            with peers(timeout=0) as (receiver,):
                for i in range(5):
                    assert transport.send(b"out %d" % i, receiver.getsockname())
                # Queued: nothing has left before the loop gets to the flush.
                try:
                    receiver.recv(100)
                    raise AssertionError("a datagram left before the end of the round")
                except BlockingIOError:
                    pass
                await asyncio.sleep(0.01)
                got = [receiver.recv(100) for _ in range(5)]
                assert got == [b"out %d" % i for i in range(5)]

    asyncio.run(scenario())


def test_a_failed_send_is_counted_and_the_others_still_leave():
    async def scenario():
        async with listening() as transport:
            with peers(timeout=1) as (receiver,):
                transport.send(b"first", receiver.getsockname())
                transport.send(b"x", ("::1", 5060))  # an IPv6 address on an IPv4 socket
                transport.send(b"x" * 70_000, receiver.getsockname())  # over the UDP maximum
                transport.send(b"last", receiver.getsockname())
                await asyncio.sleep(0.01)
                assert transport.send_errors == 2
                assert [receiver.recv(100), receiver.recv(100)] == [b"first", b"last"]

    asyncio.run(scenario())


def test_stop_sends_what_is_queued():
    async def scenario():
        with peers(timeout=1) as (receiver,):
            async with listening() as transport:
                transport.send(b"bye", receiver.getsockname())
            assert receiver.recv(100) == b"bye"

    asyncio.run(scenario())


def test_one_source_per_peer_and_the_cache_is_bounded(monkeypatch):
    from sipline.transport import udp

    monkeypatch.setattr(udp, "_MAX_SOURCES", 2)

    async def scenario():
        got = []
        async with listening(lambda data, source: got.append(source)) as transport:
            with peers(3) as socks:
                for peer in (socks[0], socks[0], socks[1]):
                    peer.sendto(b"x", transport.local)
                    await asyncio.sleep(0.02)
                assert got[0] is got[1] and got[2] is not got[0]
                assert [s.remote for s in got] == [
                    p.getsockname() for p in (socks[0], socks[0], socks[1])
                ]
                socks[2].sendto(b"x", transport.local)  # a third peer: the full cache starts again
                await asyncio.sleep(0.02)
                assert len(transport._protocol._sources) == 1
                socks[0].sendto(b"x", transport.local)
                await asyncio.sleep(0.02)
                assert got[-1] is not got[0] and got[-1].remote == socks[0].getsockname()

    asyncio.run(scenario())
