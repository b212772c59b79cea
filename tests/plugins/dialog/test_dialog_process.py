"""The dialog plugin in real ``sipline run`` processes: a 1,000-call sipp run after which
every profile is empty again, and a call that survives a restart of the server."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest
from dialogkit import Call, Phone
from sipline.mi.client import HttpClient
from sipline.testing import ServerProcess, free_port

E2E_SCENARIOS = Path(__file__).resolve().parents[2] / "e2e" / "scenarios"
LOOPBACK = "127.0.0.1"
CALLS = 1000

pytestmark = pytest.mark.e2e

ROUTES = """
CALLEE = "sip:callee@127.0.0.1:{uas}"

def route_request(ctx):
    if ctx.has_to_tag() or ctx.msg.method != "INVITE":
        return None  # in-dialog requests: observed by the dialog plugin, relayed by default
    ctx.dialog.create()
    ctx.dialog.set_dlg_profile("calls")
    ctx.dialog.set_dlg_profile("callee", "uas")
    return ctx.relay(CALLEE)
"""


class Sipline:
    """``sipline run`` with the dialog plugin, a routing script and MI over HTTP."""

    def __init__(self, workdir: Path, routes: str, dialog: str = "", *,
                 data_dir: Path | None = None, port: int | None = None) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "routes.py").write_text(routes)
        self.port = port or free_port()
        self.mi_port = free_port()
        text = f"""
[server]
listen = ["udp:{LOOPBACK}:{self.port}"]
plugins = ["dialog"]
script = "routes.py"
timer_interval = 0.2

[mi]
http = "{LOOPBACK}:{self.mi_port}"

[plugins.dialog]
profiles_no_value = ["calls"]
profiles_with_value = ["callee"]
{dialog}
"""
        env = {"SIPLINE_DATA_DIR": str(data_dir)} if data_dir is not None else None
        self.proc = ServerProcess(text, workdir, env=env)

    def start(self) -> Sipline:
        self.proc.start(probe=(LOOPBACK, self.port))
        deadline = time.monotonic() + 10
        while True:  # MI binds after SIP
            try:
                self.mi("uptime")
                return self
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def mi(self, method: str, params=None):
        client = HttpClient(f"http://{LOOPBACK}:{self.mi_port}/mi", None, 10)
        try:
            answer = client.call(method, params)
        finally:
            client.close()
        if "error" in answer:
            raise AssertionError(f"MI {method}: {answer['error']}")
        return answer["result"]

    def stop(self) -> None:
        assert self.proc.stop() == 0, self.proc.log()


def sipp(workdir: Path, name: str, scenario: str, port: int, *args: str) -> subprocess.Popen:
    with open(workdir / f"{name}.out", "wb") as out:  # the child keeps its own copy
        return subprocess.Popen(
            ["sipp", "-sf", str(E2E_SCENARIOS / scenario), "-i", LOOPBACK, "-p", str(port),
             "-nostdin", "-timeout_error", *args],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=workdir,
        )


@pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp is not installed")
def test_profiles_are_empty_again_after_a_thousand_calls(tmp_path):
    uas_port = free_port()
    server = Sipline(tmp_path / "sipline", ROUTES.format(uas=uas_port)).start()
    peers: list[subprocess.Popen] = []
    try:
        uas = sipp(tmp_path, "uas", "uas_answer.xml", uas_port, "-m", str(CALLS), "-timeout", "60s")
        peers.append(uas)
        time.sleep(0.3)  # let the UAS bind
        uac = sipp(tmp_path, "uac", "uac_call.xml", free_port(), "-m", str(CALLS), "-r", "250",
                   "-l", "200", "-s", "callee", "-timeout", "60s",
                   f"{LOOPBACK}:{server.port}")
        peers.append(uac)
        busiest = 0
        while uac.poll() is None:
            busiest = max(busiest, server.mi("profile_get_size", ["calls"])["Profile"]["count"])
            time.sleep(0.05)
        codes = (uac.wait(60), uas.wait(60))
        if codes != (0, 0):
            logs = "\n".join((tmp_path / f"{n}.out").read_text(errors="replace")[-3000:]
                             for n in ("uac", "uas"))
            raise AssertionError(f"sipp exit codes {codes}\n{logs}\n{server.proc.log()[-3000:]}")
        assert busiest > 1, "the calls overlapped"
        assert server.mi("profile_get_size", ["calls"])["Profile"]["count"] == 0
        assert server.mi("profile_get_size", ["callee", "uas"])["Profile"]["count"] == 0
        assert server.mi("profile_get_values", ["callee"]) == {"Profiles": []}
        assert server.mi("dlg_list") == {"Dialogs": []}
        assert server.mi("get_statistics", [["dialog:"]]) == {
            "dialog:active_dialogs": 0, "dialog:early_dialogs": 0,
            "dialog:processed_dialogs": CALLS, "dialog:expired_dialogs": 0,
            "dialog:failed_dialogs": 0,
        }
    finally:
        for p in peers:
            if p.poll() is None:
                p.kill()  # by PID: only the processes this test started
                p.wait(5)
        server.stop()


def test_a_call_survives_a_restart_of_the_server(tmp_path):
    caller, callee = Phone("alice"), Phone("bob")
    data_dir = tmp_path / "data"  # the embedded SQLite database, upgraded at startup
    routes = ROUTES.replace('"sip:callee@127.0.0.1:{uas}"', f'"{callee.contact}"')
    settings = 'db_mode = "write-through"'
    try:
        first = Sipline(tmp_path / "run1", routes, settings, data_dir=data_dir).start()
        try:
            call = Call(caller, callee, (LOOPBACK, first.port))
            call.establish()
            (before,) = first.mi("dlg_list")["Dialogs"]
            assert before["state"] == 4
        finally:
            first.stop()
        second = Sipline(tmp_path / "run2", routes, settings, data_dir=data_dir,
                         port=first.port).start()
        try:
            (after,) = second.mi("dlg_list")["Dialogs"]
            for key in ("ID", "callid", "from_tag", "to_tag", "caller_contact",
                        "callee_contact", "timeout", "profiles"):
                assert after[key] == before[key], key
            assert second.mi("profile_get_size", ["calls"])["Profile"]["count"] == 1
            assert second.mi("get_statistics", [["dialog:active_dialogs"]]) == {
                "dialog:active_dialogs": 1}
            call.caller_request("BYE")  # routed by its did cookie through the new process
            assert second.mi("dlg_list") == {"Dialogs": []}
            assert second.mi("profile_get_size", ["calls"])["Profile"]["count"] == 0
        finally:
            second.stop()
    finally:
        caller.close()
        callee.close()
