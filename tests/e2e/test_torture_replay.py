"""Replay the byte-exact RFC 4475 / RFC 5118 corpus at a real server, over UDP and TCP.

The corpus lives outside the project (``../shared/torture`` next to the
checkout, or ``$SIPLINE_TORTURE_DIR``); without it these tests skip. The
project's own RFC 4475 tests, which stand alone, are in tests/core/sip/.

Each message is sent as-is; afterwards a valid OPTIONS must still get 200,
so a message that hangs or kills the server fails the test. The server runs
with ``force_rport`` so that answers to Vias naming documentation addresses
come back to the test's socket (received=127.0.0.1 is added either way).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from sipline.testing import ServerProcess, SipClient, options_request


def corpus_dir() -> Path | None:
    env = os.environ.get("SIPLINE_TORTURE_DIR")
    candidates = [Path(env)] if env else []
    candidates.append(Path(__file__).resolve().parents[3] / "shared" / "torture")
    for c in candidates:
        if (c / "torture").is_dir():
            return c
    return None


CORPUS = corpus_dir()
# None of the corpus' targets is local and the server is not an open proxy:
# out-of-dialog requests get 403 "Relay forbidden", in-dialog ones 404.
NOT_FOUND = {403, 404}
SILENT = None

# What the core alone (no plugins, nothing local but 127.0.0.1) must answer to
# each file sent as one UDP datagram: a status, a set of acceptable statuses,
# or SILENT (dropped). From INDEX.md of the corpus and RFC 4475/5118.
EXPECTED: dict[str, object] = {
    # 3.1.1 valid: processed normally (none of these targets is local)
    "wsinv": NOT_FOUND, "intmeth": {501, 403}, "esc01": NOT_FOUND, "escnull": NOT_FOUND,
    "esc02": {501, 403}, "lwsdisp": NOT_FOUND, "longreq": NOT_FOUND, "dblreq": NOT_FOUND,
    "semiuri": NOT_FOUND, "transports": NOT_FOUND, "mpart01": NOT_FOUND,
    "unreason": SILENT, "noreason": SILENT,
    # 3.1.2 invalid
    "badinv01": 400, "clerr": 400, "ncl": 400, "scalar02": 400, "scalarlg": SILENT,
    "quotbal": 400, "ltgtruri": 400, "lwsruri": 400, "lwsstart": 400, "trws": 400,
    "escruri": 400, "baddate": NOT_FOUND, "regbadct": {400, *NOT_FOUND}, "badaspec": 400,
    "baddn": {400, SILENT}, "badvers": 505, "mismatch01": 400, "mismatch02": {501, 400},
    "bigcode": SILENT,
    # 3.2 transaction layer
    "badbranch": {*NOT_FOUND, 400},
    # 3.3 application layer
    "insuf": 400, "unkscm": 416, "novelsc": 416, "unksm2": NOT_FOUND, "bext01": 420,
    "invut": NOT_FOUND, "regaut01": NOT_FOUND, "multi01": 400, "mcl01": 400, "bcast": SILENT,
    "zeromf": 483, "cparam01": NOT_FOUND, "cparam02": NOT_FOUND, "regescrt": NOT_FOUND,
    "sdp01": NOT_FOUND,
    # 3.4 backward compatibility
    "inv2543": NOT_FOUND,
    # not referenced by the RFC: no SIP version, no Via -> nothing to answer
    "test": SILENT,
    # RFC 5118
    "ipv6-good": NOT_FOUND, "ipv6-bad": 400, "port-ambiguous": NOT_FOUND,
    "port-unambiguous": NOT_FOUND, "via-received-param-with-delim": NOT_FOUND,
    "via-received-param-no-delim": NOT_FOUND, "ipv6-in-sdp": NOT_FOUND,
    "mult-ip-in-header": NOT_FOUND, "mult-ip-in-sdp": NOT_FOUND, "ipv4-mapped-ipv6": NOT_FOUND,
    "ipv6-bug-abnf-3-colons": {*NOT_FOUND, 400}, "ipv6-correct-abnf-2-colons": NOT_FOUND,
}

# Over TCP the framing tests behave differently (RFC 4475 §3.1.2.2, §3.1.2.3, §3.3.9):
# the server waits for the missing bytes, or closes the connection.
TCP_EXPECTED: dict[str, object] = {
    "clerr": SILENT,  # Content-Length larger than what arrived: keep waiting
    "ncl": "closed",
    "mcl01": {"closed", 400},
    "inv2543": "closed",  # no Content-Length on a stream
    "baddn": SILENT,  # header block never terminated
}


def files() -> list[Path]:
    if CORPUS is None:
        return []
    return sorted((CORPUS / "torture").glob("*.dat")) + sorted(
        (CORPUS / "torture-ipv6").glob("*.dat")
    )


pytestmark = pytest.mark.skipif(
    CORPUS is None,
    reason="torture corpus not found (../shared/torture or $SIPLINE_TORTURE_DIR); "
    "the project's own RFC 4475 tests are in tests/core/sip",
)


@pytest.fixture(scope="module")
def server(tmp_path_factory, ports):
    port = ports["v4"]
    config = f"""
[server]
listen = ["udp:127.0.0.1:{port}", "tcp:127.0.0.1:{port}"]
force_rport = true
"""
    proc = ServerProcess(config, tmp_path_factory.mktemp("torture"))
    proc.start(probe=("127.0.0.1", port))
    yield ("127.0.0.1", port)
    assert proc.stop() == 0, proc.log()


def test_corpus_is_complete():
    names = {p.stem for p in files()}
    assert names == set(EXPECTED), (names ^ set(EXPECTED))


def status_of(data: bytes) -> int:
    """The status code of a response, read from its status line only.

    An error response copies the request's broken headers verbatim
    (RFC 3261 §8.2.6.2), so parsing the whole of it could fail.
    """
    line = data.split(b"\r\n", 1)[0].split(b" ", 2)
    assert line[0] == b"SIP/2.0" and len(line) >= 2, data[:80]
    return int(line[1])


def _check(name: str, got: object, expected: object) -> None:
    allowed = expected if isinstance(expected, set) else {expected}
    assert got in allowed, f"{name}: got {got}, expected {expected}"


def _alive(server: tuple[str, int], proto: str = "udp") -> None:
    c = SipClient(server, proto)
    try:
        transport = "UDP" if proto == "udp" else "TCP"
        resp = c.request(options_request(f"{server[0]}:{server[1]}", local=c.local_hostport,
                                         transport=transport))
        assert resp.status == 200
    finally:
        c.close()


@pytest.mark.parametrize("path", files(), ids=lambda p: p.stem)
def test_udp(server, path):
    client = SipClient(server, "udp")
    try:
        client.send(path.read_bytes())
        try:
            reply = client.recv(0.6)
            while status_of(reply) < 200:  # 100 Trying for an INVITE the proxy took
                reply = client.recv(0.6)
            got: object = status_of(reply)
            assert reply.split(b"\r\n", 1)[0].split(b" ", 2)[2].strip(), "reason phrase"
            # exactly one answer (dblreq: the trailing INVITE is not processed)
            assert client.expect_silence(0.2), f"{path.stem}: more than one response"
        except (TimeoutError, socket.timeout):
            got = SILENT
    finally:
        client.close()
    _check(path.stem, got, EXPECTED[path.stem])
    _alive(server)


@pytest.mark.parametrize("path", files(), ids=lambda p: p.stem)
def test_tcp(server, path):
    client = SipClient(server, "tcp")
    try:
        client.send(path.read_bytes())
        try:
            reply = client.recv(0.6)
            while status_of(reply) < 200:
                reply = client.recv(0.6)
            got: object = status_of(reply)
        except (TimeoutError, socket.timeout):
            got = SILENT
        except (ConnectionError, OSError):
            got = "closed"
    finally:
        client.close()
    _check(path.stem, got, TCP_EXPECTED.get(path.stem, EXPECTED[path.stem]))
    _alive(server, "tcp")
