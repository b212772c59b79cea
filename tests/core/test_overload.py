"""Load shedding: a backed-up UDP socket makes new requests get 503, calls in progress go on."""

from __future__ import annotations

import asyncio
import socket
import uuid

from sipline.overload import OverloadDetector
from sipline.testing import SipClient, inprocess_server, options_request
from sipline.transport import UdpTransport


def test_udp_backlog_is_read_from_the_kernel():
    async def scenario():
        transport = UdpTransport("127.0.0.1", 0, lambda data, source: None)
        await transport.start()
        try:
            sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            for _ in range(20):  # the loop has not run yet: they wait in the kernel
                sender.sendto(b"x" * 500, transport.local)
            sender.close()
            queued, size = transport.backlog()
            assert size > 0 and queued >= 20 * 500
            await asyncio.sleep(0.05)  # now the receive loop drains it
            assert transport.backlog()[0] < queued
        finally:
            await transport.stop()

    asyncio.run(scenario())


def invite(client: SipClient, to_tag: str = "") -> bytes:
    host, port = client.server
    data = options_request(f"{host}:{port}", local=client.local_hostport,
                           ruri=f"sip:someone@{host}:{port}", call_id=uuid.uuid4().hex)
    data = data.replace(b"OPTIONS ", b"INVITE ", 1).replace(b"CSeq: 1 OPTIONS", b"CSeq: 1 INVITE")
    if to_tag:
        data = data.replace(b">\r\nCall-ID", f">;tag={to_tag}\r\nCall-ID".encode(), 1)
    return data


def test_overloaded_server_sheds_new_requests_only():
    # The watcher is off (it would clear the flag on its next tick): set it by hand.
    with inprocess_server({"server": {"overload_backlog": 0}}) as srv:
        client = SipClient(srv.address())
        srv.server.overloaded = True  # what _watch_load sets on a backlog
        shed = client.request(invite(client))
        assert (shed.status, shed.reason, shed.get("Retry-After")) == (503, "Server Overloaded", "2")
        # in-dialog requests are not shed: the default script answers them (404 here)
        assert client.request(invite(client, to_tag="x1")).status == 404
        srv.server.overloaded = False
        assert client.request(invite(client)).status == 404
        assert srv.server.shed_requests == 1
        client.close()


def test_a_burst_shorter_than_sustain_is_not_overload():
    detector = OverloadDetector(0.25, sustain=0.1, interval=0.02)  # 5 intervals
    full, empty = (300, 1000), (10, 1000)
    for _ in range(5):
        assert detector.sample([empty, full]) is False
    assert detector.sample([empty]) is False  # drained: the count starts again
    for _ in range(5):
        assert detector.sample([full]) is False
    assert detector.sample([full]) is True  # 100 ms over the mark, no shorter
    assert detector.sample([full, None]) is True
    assert detector.sample([(250, 1000)]) is False  # at the mark is not over it: ends at once


def test_a_backlog_that_drains_is_not_overload():
    # After a pause the queue is long but shrinking: the server is catching up.
    detector = OverloadDetector(0.25, sustain=0.1, interval=0.02)
    for queued in range(900, 290, -50):  # 13 samples over the mark, each a little shorter
        assert detector.sample([(queued, 1000)]) is False
    # Then it stops shrinking: 100 ms after the first 300, no shorter than that, is overload.
    for _ in range(4):
        assert detector.sample([(300, 1000)]) is False
    assert detector.sample([(310, 1000)]) is True
    assert detector.sample([(290, 1000)]) is True  # shrinking again, still over: goes on
    assert detector.sample([(200, 1000)]) is False


def test_a_growing_backlog_is_overload():
    detector = OverloadDetector(0.25, sustain=0.1, interval=0.02)
    results = [detector.sample([(300 + 10 * i, 1000)]) for i in range(6)]
    assert results == [False] * 5 + [True]


def test_sustain_zero_sheds_on_the_first_full_sample():
    detector = OverloadDetector(0.5, sustain=0, interval=0.02)
    assert detector.sample([(600, 1000)]) is True
    assert detector.sample([None, (0, 0)]) is False  # unknown or no buffer: not overload
