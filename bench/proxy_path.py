"""In-process benchmark of the proxy's per-call CPU cost, without sockets or sipp.

Feeds one complete call (INVITE, 180, 200, ACK, BYE, 200) per iteration straight into
``Server.on_message`` through a transport that only records what would be sent, so the
figure is the Python cost of sipline's per-message path (parse, transaction matching,
routing script, relay, serialisation) without kernel, loopback or load-generator noise.
It prints µs per call and calls/s of one core; ``--profile`` prints a cProfile table.

    python bench/proxy_path.py [--calls 5000] [--profile] [--setup script|registrar]

``--setup registrar`` is the anchor's setup (the one ../shared/bench measures): the
``registrar`` plugin with the built-in default script, the callee registered first,
INVITEs record-routed and relayed by location lookup.

Compare with the sipp figures of bench/sipbench.py: the difference is the kernel's share
(sendto/recvfrom) and the event loop's.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import os
import pstats
import tempfile
import time
from collections import Counter
from pathlib import Path

from sipline._build import compiled_modules
from sipline.config import build_config
from sipline.plugins import build_plugin_manager
from sipline.routing.default import CoreDefaults
from sipline.routing.script import load_script
from sipline.gcpolicy import GC_THRESHOLDS
from sipline.server import Server
from sipline.sip import parse_message
from sipline.transport import Source

SCRIPT = '''
def route_request(ctx):
    msg = ctx.msg
    if msg.to.tag:
        if ctx.loose_route():
            return ctx.relay()
        return ctx.reply(404, "Not here")
    if msg.method == "INVITE":
        ctx.record_route()
        ctx.set_ruri("sip:uas@127.0.0.1:5090")
        return ctx.relay()
'''

UAC = ("127.0.0.1", 5091)
UAS = ("127.0.0.1", 5090)
SDP = (
    b"v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n"
    b"t=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)


class RecordingTransport:
    """Stands in for a UDP listener: keeps the last datagram sent to each address."""

    proto = "udp"

    def __init__(self, local: tuple[str, int]) -> None:
        self.local = local
        self.last: dict[tuple[str, int], bytes] = {}

    def send(self, data: bytes, addr: tuple[str, int], conn: object = None) -> bool:
        self.last[addr] = data
        return True


def invite(i: int, proxy: str) -> bytes:
    head = (
        f"INVITE sip:uas@{proxy} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5091;branch=z9hG4bK-{i}-1-0\r\n"
        f"From: sipp <sip:sipp@127.0.0.1:5091>;tag={i}SIPpTag00\r\n"
        f"To: uas <sip:uas@{proxy}>\r\n"
        f"Call-ID: {i}-bench@127.0.0.1\r\n"
        "CSeq: 1 INVITE\r\n"
        "Contact: sip:sipp@127.0.0.1:5091\r\n"
        "Max-Forwards: 70\r\n"
        "Subject: Performance Test\r\n"
        "Content-Type: application/sdp\r\n"
        f"Content-Length: {len(SDP)}\r\n\r\n"
    )
    return head.encode() + SDP


def answer(request: bytes, status: int, reason: str, to_tag: str, rr: bool) -> bytes:
    """The UAS's response to the request the proxy sent it."""
    req = parse_message(request)
    lines = [f"SIP/2.0 {status} {reason}"]
    lines.append("Via: " + ", ".join(req.get_all("via")))  # on one line, as sipp answers
    to = req.get("to")
    lines.append(f"To: {to};tag={to_tag}" if "tag=" not in to else f"To: {to}")
    lines += [f"From: {req.get('from')}", f"Call-ID: {req.call_id}", f"CSeq: {req.get('cseq')}"]
    if rr:
        lines += [f"Record-Route: {v}" for v in req.get_all("record-route")]
    lines += ["Contact: <sip:uas@127.0.0.1:5090;transport=UDP>", "Content-Length: 0", "", ""]
    return "\r\n".join(lines).encode()


def in_dialog(method: str, i: int, cseq: int, proxy: str, route: str) -> bytes:
    return (
        f"{method} sip:uas@127.0.0.1:5090;transport=UDP SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5091;branch=z9hG4bK-{i}-{cseq}-{method}\r\n"
        f"From: sipp <sip:sipp@127.0.0.1:5091>;tag={i}SIPpTag00\r\n"
        f"To: uas <sip:uas@{proxy}>;tag=uas{i}\r\n"
        f"Call-ID: {i}-bench@127.0.0.1\r\n"
        f"CSeq: {cseq if method != 'ACK' else 1} {method}\r\n"
        f"Route: {route}\r\n"
        "Max-Forwards: 70\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def register(proxy: str) -> bytes:
    return (
        f"REGISTER sip:{proxy} SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bK-reg-1\r\n"
        f"From: <sip:uas@{proxy}>;tag=reg1\r\n"
        f"To: <sip:uas@{proxy}>\r\n"
        "Call-ID: reg-bench@127.0.0.1\r\n"
        "CSeq: 1 REGISTER\r\n"
        "Contact: <sip:uas@127.0.0.1:5090;transport=UDP>\r\n"
        "Expires: 3600\r\n"
        "Max-Forwards: 70\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=5000)
    ap.add_argument("--profile", action="store_true", help="print a cProfile table")
    ap.add_argument("--setup", choices=["script", "registrar"], default="script",
                    help="script: a routing script relays to the callee statically; "
                    "registrar: the default script with a location lookup")
    ap.add_argument("--sort", default="tottime", help="cProfile sort key (tottime, cumtime)")
    ap.add_argument("--lines", type=int, default=30, help="rows of the cProfile table")
    ap.add_argument("--retained", action="store_true",
                    help="count the objects the garbage collector tracks that the calls leave "
                    "alive (finished transactions wait for their timers), by type")
    args = ap.parse_args()

    try:  # the loop `sipline run` uses when installed
        import uvloop

        loop = uvloop.new_event_loop()
    except ImportError:
        loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "routes.py"
        path.write_text(SCRIPT)
        server_cfg: dict = {"listen": ["udp:127.0.0.1:0"]}
        if args.setup == "registrar":
            from sipline.plugins import PluginLoader

            server_cfg["plugins"] = ["registrar"]
            loader = PluginLoader()
            config = build_config({"server": server_cfg},
                                  installed_plugins=loader.installed,
                                  model_for=loader.config_model)
            pm = build_plugin_manager([("registrar", loader.load("registrar"))],
                                      defaults=CoreDefaults())
        else:
            config = build_config({"server": server_cfg})
            pm = build_plugin_manager([], defaults=CoreDefaults(), script=load_script(path))
        server = Server(config, pm)
        loop.run_until_complete(server.start())
        local = server.transports[0].local
        fake = RecordingTransport(local)
        server._transport_index[("udp", False)] = fake  # branches leave through it too
        proxy = f"{local[0]}:{local[1]}"
        route = f"<sip:{proxy};lr>"
        on_message = server.on_message
        from_uac = Source("udp", UAC, local, fake)
        from_uas = Source("udp", UAS, local, fake)

        if args.setup == "registrar":
            on_message(register(proxy), from_uas)
            assert fake.last[UAS].startswith(b"SIP/2.0 200"), fake.last[UAS][:60]

        def one_call(i: int) -> None:
            on_message(invite(i, proxy), from_uac)
            sent = fake.last[UAS]
            on_message(answer(sent, 180, "Ringing", f"uas{i}", False), from_uas)
            on_message(answer(sent, 200, "OK", f"uas{i}", True), from_uas)
            on_message(in_dialog("ACK", i, 1, proxy, route), from_uac)
            on_message(in_dialog("BYE", i, 2, proxy, route), from_uac)
            on_message(answer(fake.last[UAS], 200, "OK", f"uas{i}", False), from_uas)

        one_call(-1)
        gc.collect()
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLDS)  # as `sipline run` does
        if os.environ.get("NOGC"):
            gc.disable()
        assert fake.last[UAC].startswith(b"SIP/2.0 200"), fake.last[UAC][:60]
        # the messages the UAS "sends" are built outside the timed part
        calls = args.calls
        prof = cProfile.Profile() if args.profile else None
        t_build = 0.0
        t0 = time.process_time()
        if prof:
            prof.enable()
        for i in range(calls):
            b0 = time.process_time()
            inv = invite(i, proxy)
            ack = in_dialog("ACK", i, 1, proxy, route)
            bye = in_dialog("BYE", i, 2, proxy, route)
            b1 = time.process_time()
            on_message(inv, from_uac)
            sent = fake.last[UAS]
            b2 = time.process_time()
            ringing = answer(sent, 180, "Ringing", f"uas{i}", False)
            ok = answer(sent, 200, "OK", f"uas{i}", True)
            b3 = time.process_time()
            on_message(ringing, from_uas)
            on_message(ok, from_uas)
            on_message(ack, from_uac)
            on_message(bye, from_uac)
            b4 = time.process_time()
            bye_ok = answer(fake.last[UAS], 200, "OK", f"uas{i}", False)
            b5 = time.process_time()
            on_message(bye_ok, from_uas)
            t_build += (b1 - b0) + (b3 - b2) + (b5 - b4)
        if prof:
            prof.disable()
        elapsed = time.process_time() - t0 - t_build
        build = "compiled (mypyc)" if compiled_modules() else "pure Python"
        print(f"sipline proxy path, {calls} calls (INVITE/180/200/ACK/BYE/200), one core, "
              f"in-process, {build}")
        print(f"  {elapsed / calls * 1e6:8.1f} µs CPU per call   {calls / elapsed:10,.0f} calls/s")
        print(f"  transactions still in the table (their timers run later): {len(server.proxy.layer)}")
        if prof:
            pstats.Stats(prof).sort_stats(args.sort).print_stats(args.lines)
        if args.retained:
            # Everything from before the loop was frozen: what the collector sees now is what
            # the calls left. Each of these is traversed by every collection until freed.
            gc.collect()
            kinds = Counter(type(o).__name__ for o in gc.get_objects())
            print(f"  objects tracked by the collector, left per call: "
                  f"{sum(kinds.values()) / calls:.1f}")
            for name, n in kinds.most_common(12):
                print(f"    {n / calls:6.2f}  {name}")
        loop.run_until_complete(server.stop())
    loop.close()


if __name__ == "__main__":
    main()
