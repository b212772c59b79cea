"""docs/examples/routes.py works as documented: PSTN gateways with failover."""

from __future__ import annotations

import socket
from pathlib import Path

from sipline.routing.script import load_script
from sipline.sip import make_response, parse_message
from sipline.testing import SipClient, inprocess_server, options_request

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "routes.py"


class Gateway:
    """A raw UDP socket standing in for a gateway: answers INVITEs with ``status``."""

    def __init__(self, status: int) -> None:
        self.status = status
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(3)
        self.uri = "sip:127.0.0.1:%d" % self.sock.getsockname()[1]

    def answer_invite(self) -> bytes:
        while True:
            data, addr = self.sock.recvfrom(65535)
            msg = parse_message(data)
            if getattr(msg, "method", None) == "INVITE":
                reply = make_response(msg, self.status, to_tag="gw")
                self.sock.sendto(reply.to_bytes(), addr)
                return data


def invite(client: SipClient, target: str) -> bytes:
    return options_request(target, local=client.local_hostport, ruri="sip:+15551234@" + target).replace(
        b"OPTIONS ", b"INVITE ", 1
    ).replace(b"CSeq: 1 OPTIONS", b"CSeq: 1 INVITE")


def test_example_script_fails_over_to_the_second_gateway():
    first, second = Gateway(503), Gateway(486)
    plugin = load_script(EXAMPLE)
    plugin.__sipline_module__.GATEWAYS[:] = [first.uri, second.uri]
    try:
        with inprocess_server({"proxy": {"t1": 0.05}}, script=plugin) as srv:
            host, port = srv.address()
            client = SipClient((host, port))
            client.send(invite(client, f"{host}:{port}"))
            seen_first = parse_message(first.answer_invite())
            seen_second = parse_message(second.answer_invite())
            final = None
            while final is None:
                msg = parse_message(client.recv(3))
                if msg.status >= 200:
                    final = msg
            client.close()
    finally:
        first.sock.close()
        second.sock.close()
    # both gateways got the call, with Record-Route, and the caller got the real answer
    assert seen_first.get("Record-Route") and seen_second.get("Record-Route")
    assert seen_first.top_via.branch != seen_second.top_via.branch
    assert (final.status, final.to.tag) == (486, "gw")
