"""The UDP listener: delivery, a failing handler, ICMP errors and closing, on real sockets."""

from __future__ import annotations

import asyncio
import socket

from sipline.transport import UdpTransport


def _sender() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    return sock


def test_datagrams_are_delivered_in_order_with_their_source():
    async def scenario():
        got = []
        transport = UdpTransport("127.0.0.1", 0, lambda data, source: got.append((data, source)))
        await transport.start()
        sender = _sender()
        try:
            for i in range(50):
                sender.sendto(b"msg %d" % i, transport.local)
            for _ in range(100):
                if len(got) == 50:
                    break
                await asyncio.sleep(0.01)
            assert [data for data, _ in got] == [b"msg %d" % i for i in range(50)]
            source = got[0][1]
            assert source.proto == "udp" and not source.reliable
            assert source.remote == sender.getsockname()
            assert source.local == transport.local and source.transport is transport
        finally:
            sender.close()
            await transport.stop()

    asyncio.run(scenario())


def test_a_failing_handler_does_not_stop_the_listener():
    async def scenario():
        got = []

        def handler(data, source):
            if data == b"boom":
                raise RuntimeError("handler bug")
            got.append(data)

        transport = UdpTransport("127.0.0.1", 0, handler)
        await transport.start()
        sender = _sender()
        try:
            sender.sendto(b"boom", transport.local)
            sender.sendto(b"after", transport.local)
            for _ in range(100):
                if got:
                    break
                await asyncio.sleep(0.01)
            assert got == [b"after"]
        finally:
            sender.close()
            await transport.stop()

    asyncio.run(scenario())


def test_an_icmp_error_of_a_send_does_not_stop_the_listener():
    async def scenario():
        got = []
        transport = UdpTransport("127.0.0.1", 0, lambda data, source: got.append(data))
        await transport.start()
        closed = _sender()
        dead = closed.getsockname()
        closed.close()  # nothing listens there: the send draws ICMP port unreachable
        sender = _sender()
        try:
            assert transport.send(b"to nobody", dead)
            await asyncio.sleep(0.05)
            sender.sendto(b"still here", transport.local)
            for _ in range(100):
                if got:
                    break
                await asyncio.sleep(0.01)
            assert got == [b"still here"]
        finally:
            sender.close()
            await transport.stop()

    asyncio.run(scenario())


def test_stop_frees_the_port_and_sends_fail_cleanly():
    async def scenario():
        transport = UdpTransport("127.0.0.1", 0, lambda data, source: None)
        await transport.start()
        port = transport.port
        await transport.stop()
        assert transport.send(b"x", ("127.0.0.1", 9)) is False
        again = UdpTransport("127.0.0.1", port, lambda data, source: None)
        await again.start()  # would raise EADDRINUSE if the socket were still open
        await again.stop()

    asyncio.run(scenario())


def test_sends_of_one_round_leave_together_in_order():
    async def scenario():
        transport = UdpTransport("127.0.0.1", 0, lambda data, source: None)
        await transport.start()
        receiver = _sender()
        receiver.setblocking(False)
        try:
            for i in range(5):
                assert transport.send(b"out %d" % i, receiver.getsockname())
            # Queued: nothing has left before the loop gets to the flush.
            try:
                receiver.recv(100)
                raise AssertionError("a datagram left before the end of the round")
            except BlockingIOError:
                pass
            await asyncio.sleep(0.01)
            got = []
            for _ in range(5):
                got.append(receiver.recv(100))
            assert got == [b"out %d" % i for i in range(5)]
        finally:
            receiver.close()
            await transport.stop()

    asyncio.run(scenario())


def test_a_failed_send_is_counted_and_the_others_still_leave():
    async def scenario():
        transport = UdpTransport("127.0.0.1", 0, lambda data, source: None)
        await transport.start()
        receiver = _sender()
        receiver.settimeout(1)
        try:
            transport.send(b"first", receiver.getsockname())
            transport.send(b"x", ("::1", 5060))  # an IPv6 address on an IPv4 socket
            transport.send(b"x" * 70_000, receiver.getsockname())  # over the UDP maximum
            transport.send(b"last", receiver.getsockname())
            await asyncio.sleep(0.01)
            assert transport.send_errors == 2
            assert [receiver.recv(100), receiver.recv(100)] == [b"first", b"last"]
        finally:
            receiver.close()
            await transport.stop()

    asyncio.run(scenario())


def test_stop_sends_what_is_queued():
    async def scenario():
        transport = UdpTransport("127.0.0.1", 0, lambda data, source: None)
        await transport.start()
        receiver = _sender()
        receiver.settimeout(1)
        try:
            transport.send(b"bye", receiver.getsockname())
            await transport.stop()
            assert receiver.recv(100) == b"bye"
        finally:
            receiver.close()

    asyncio.run(scenario())


def test_one_source_per_peer_and_the_cache_is_bounded(monkeypatch):
    from sipline.transport import udp

    monkeypatch.setattr(udp, "_MAX_SOURCES", 2)

    async def scenario():
        got = []
        transport = UdpTransport("127.0.0.1", 0, lambda data, source: got.append(source))
        await transport.start()
        peers = [_sender() for _ in range(3)]
        try:
            for peer in (peers[0], peers[0], peers[1]):
                peer.sendto(b"x", transport.local)
                await asyncio.sleep(0.02)
            assert got[0] is got[1] and got[2] is not got[0]
            assert [s.remote for s in got] == [p.getsockname() for p in (peers[0], peers[0], peers[1])]
            peers[2].sendto(b"x", transport.local)  # a third peer: the full cache starts again
            await asyncio.sleep(0.02)
            assert len(transport._protocol._sources) == 1
            peers[0].sendto(b"x", transport.local)
            await asyncio.sleep(0.02)
            assert got[-1] is not got[0] and got[-1].remote == peers[0].getsockname()
        finally:
            for peer in peers:
                peer.close()
            await transport.stop()

    asyncio.run(scenario())
