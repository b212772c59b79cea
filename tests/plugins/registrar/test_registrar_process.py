"""The installed distribution: discovered by entry point, enabled from TOML, in a real process."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

from sipline.sip import parse_message
from sipline.testing import ServerProcess, SipClient, free_port
from test_registrar import invite, register


def test_listed_by_sipline_plugins():
    out = subprocess.run([sys.executable, "-m", "sipline", "plugins", "--json"],
                         capture_output=True, text=True, timeout=60)
    rows = {r["name"]: r for r in json.loads(out.stdout)}
    assert rows["registrar"]["dist"] == "sipline-registrar"
    assert rows["registrar"]["entry_point"] == "sipline_registrar.plugin"


def test_register_then_call_through_a_real_server(tmp_path):
    port = free_port()
    config = (
        f'[server]\nlisten = ["udp:127.0.0.1:{port}"]\nplugins = ["registrar"]\n'
        "[plugins.registrar]\nmin_expires = 10\n"
    )
    proc = ServerProcess(config, tmp_path).start(probe=("127.0.0.1", port))
    callee = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    callee.bind(("127.0.0.1", 0))
    callee.settimeout(3)
    try:
        c = SipClient(("127.0.0.1", port))
        contact = f"<sip:alice@127.0.0.1:{callee.getsockname()[1]}>"
        assert c.request(register(c, [contact], expires=300)).status == 200
        c.send(invite(c))
        got = parse_message(callee.recvfrom(65535)[0])
        assert got.method == "INVITE"
        assert got.raw_uri == f"sip:alice@127.0.0.1:{callee.getsockname()[1]}"
        assert got.get("Record-Route")  # the default script record-routes INVITEs
        c.close()
    finally:
        callee.close()
        assert proc.stop() == 0, proc.log()
