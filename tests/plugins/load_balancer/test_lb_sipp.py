"""Acceptance of the load balancer (issue 6): a real ``sipline run`` with the dialog and
load_balancer plugins and the example routing script (``plugins/load_balancer/examples/
routes.py``), destinations in the ``load_balancer`` table of its SQLite database,
three sipp UAS destinations with capacity 2 for ``pstn``, callers as raw UDP sockets (so
that each call is held and ended exactly when the test says), management through the MI
HTTP listener.

Which UAS took a call is read twice: from the Contact of the 200 the caller got (the UAS
writes its own port there) and from the UAS's own log of the INVITEs it received.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest
from lbkit import Caller
from sipline import db
from sipline.mi.client import HttpClient
from sipline.testing import ServerProcess, free_port, wait_for
from sipline_load_balancer.models import load_balancer
from sqlalchemy import create_engine, insert, update
from sqlalchemy.pool import NullPool

SCENARIOS = Path(__file__).parent / "scenarios"
#: The routing script of the plugin's README, as shipped.
EXAMPLE = Path(__file__).resolve().parents[3] / "plugins" / "load_balancer" / "examples" / "routes.py"
LOOPBACK = "127.0.0.1"

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp is not installed"),
]


class Uas:
    """One sipp UAS destination (stopped and restarted by its PID)."""

    def __init__(self, workdir: Path, name: str, scenario: str = "uas_lb.xml") -> None:
        self.workdir = workdir
        self.name = name
        self.scenario = scenario
        self.port = free_port()
        self.uri = f"sip:{LOOPBACK}:{self.port}"
        self.log = workdir / f"{name}.log"
        self.proc: subprocess.Popen | None = None
        self._out = None
        self.runs = 0

    def start(self) -> Uas:
        self.runs += 1
        self._out = open(self.workdir / f"{self.name}.{self.runs}.out", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            ["sipp", "-sf", str(SCENARIOS / self.scenario), "-i", LOOPBACK,
             "-p", str(self.port), "-nostdin", "-trace_logs", "-log_file", str(self.log)],
            stdout=self._out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            cwd=self.workdir,
        )
        time.sleep(0.2)  # let it bind
        assert self.proc.poll() is None, f"{self.name} exited: {self.proc.returncode}"
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()  # by PID: only the process this object started
            self.proc.wait(5)
        if self._out is not None:
            self._out.close()
            self._out = None

    def invites(self) -> list[str]:
        """Call-IDs of the INVITEs it received (its log, written as they come)."""
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return []
        return [line.split()[1] for line in text.splitlines() if line.startswith("INVITE ")]


class Sipline:
    """``sipline run`` with dialog + load_balancer, the example routing script, MI over HTTP."""

    def __init__(self, workdir: Path, uas: list[Uas], lb_settings: str = "", *,
                 capacity: int = 2, probe_mode: int = 0) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        shutil.copy(EXAMPLE, workdir / "routes.py")
        self.port = free_port()
        self.mi_port = free_port()
        self.url = f"sqlite:///{workdir / 'sipline.db'}"
        db.upgrade(self.url)
        self.execute(insert(load_balancer), [
            {"id": i, "group_id": 1, "dst_uri": u.uri, "resources": f"pstn={capacity}",
             "probe_mode": probe_mode, "description": u.name}
            for i, u in enumerate(uas, 1)
        ])
        text = f"""
[server]
listen = ["udp:{LOOPBACK}:{self.port}"]
plugins = ["dialog", "load_balancer"]
script = "routes.py"
timer_interval = 0.1

[database]
url = "{self.url}"

[mi]
http = "{LOOPBACK}:{self.mi_port}"

[plugins.load_balancer]
{lb_settings or "probing_interval = 0"}
"""
        self.proc = ServerProcess(text, workdir)

    def execute(self, statement, rows=None) -> None:
        engine = create_engine(self.url, poolclass=NullPool)
        try:
            with engine.begin() as conn:
                conn.execute(statement, rows) if rows is not None else conn.execute(statement)
        finally:
            engine.dispose()

    def start(self) -> Sipline:
        self.proc.start(probe=(LOOPBACK, self.port))
        wait_for(self._mi_up, timeout=10, what="MI listening")
        return self

    def _mi_up(self) -> bool:
        try:
            self.mi("uptime")
            return True
        except (OSError, AssertionError, Exception):  # noqa: BLE001 - not up yet
            return False

    def mi(self, method: str, params=None):
        client = HttpClient(f"http://{LOOPBACK}:{self.mi_port}/mi", None, 10)
        try:
            answer = client.call(method, params)
        finally:
            client.close()
        if "error" in answer:
            raise AssertionError(f"MI {method}: {answer['error']}")
        return answer["result"]

    def loads(self) -> list[int]:
        return [d["Resources"][0]["load"] for d in self.mi("lb_list")["Destinations"]]

    def enabled(self) -> list[bool]:
        return [d["enabled"] for d in self.mi("lb_list")["Destinations"]]

    def stop(self) -> None:
        assert self.proc.stop() == 0, self.proc.log()[-3000:]


def answered_by(leg, uas: list[Uas]) -> str:
    """The UAS whose port is in the Contact of the 200 the caller got."""
    contact = leg.final.get("Contact")
    (found,) = [u.name for u in uas if f":{u.port};" in contact or f":{u.port}>" in contact]
    return found


@pytest.fixture
def world(tmp_path):
    """Factory of UASes and a sipline, all stopped after the test."""
    made: dict[str, list] = {"uas": [], "sipline": [], "callers": []}

    def uas(name: str, scenario: str = "uas_lb.xml") -> Uas:
        u = Uas(tmp_path, name, scenario).start()
        made["uas"].append(u)
        return u

    def sipline(uases: list[Uas], settings: str = "", **kw) -> tuple[Sipline, Caller]:
        s = Sipline(tmp_path / "sipline", uases, settings, **kw)
        made["sipline"].append(s)
        s.start()
        caller = Caller((LOOPBACK, s.port))
        made["callers"].append(caller)
        return s, caller

    yield uas, sipline
    for c in made["callers"]:
        c.close()
    for s in made["sipline"]:
        s.stop()
    for u in made["uas"]:
        u.stop()


def test_capacity_spread_503_bye_lb_status_and_lb_reload(world):
    uas_factory, sipline_factory = world
    uas = [uas_factory(f"uas{i}") for i in (1, 2, 3)]
    server, caller = sipline_factory(uas)

    # six concurrent calls: 2/2/2
    legs = [caller.call() for _ in range(6)]
    assert [leg.status for leg in legs] == [200] * 6
    by = [answered_by(leg, uas) for leg in legs]
    assert {name: by.count(name) for name in ("uas1", "uas2", "uas3")} == {
        "uas1": 2, "uas2": 2, "uas3": 2}
    assert [len(u.invites()) for u in uas] == [2, 2, 2]
    assert server.loads() == [2, 2, 2]

    # the seventh: the script's 503, no UAS sees it
    seventh = caller.call()
    assert (seventh.status, seventh.final.reason) == (503, "Service Unavailable")
    assert [len(u.invites()) for u in uas] == [2, 2, 2]

    # a BYE frees a slot (on uas1) and the next call takes it
    on_uas1 = [leg for leg, name in zip(legs, by) if name == "uas1"]
    assert on_uas1[0].bye() == 200
    wait_for(lambda: server.loads() == [1, 2, 2], what="slot freed")
    admitted = caller.call()
    assert admitted.status == 200 and answered_by(admitted, uas) == "uas1"
    legs = [leg for leg in legs if leg is not on_uas1[0]] + [admitted]

    # lb_status forces uas1 off (a free slot there is not used) and on again
    assert on_uas1[1].bye() == 200
    wait_for(lambda: server.loads() == [1, 2, 2], what="slot freed again")
    legs.remove(on_uas1[1])
    assert server.mi("lb_status", [1, 0]) == {"id": 1, "uri": uas[0].uri, "enabled": 0,
                                              "state": "disabled (lb_status)"}
    assert server.mi("load_balancer:status", {"destination_id": 1})["enabled"] == 0
    assert caller.call().status == 503
    assert server.mi("lb_status", [1, 1])["enabled"] == 1
    back = caller.call()
    assert back.status == 200 and answered_by(back, uas) == "uas1"
    legs.append(back)
    assert server.loads() == [2, 2, 2]

    # change the table: uas3 gets 3 slots (kept: its 2 calls stay counted), uas2's row
    # now names it differently (a new destination: its count starts from 0), uas1
    # untouched (its 2 calls stay counted)
    server.execute(update(load_balancer).where(load_balancer.c.id == 3).values(
        resources="pstn=3"))
    server.execute(update(load_balancer).where(load_balancer.c.id == 2).values(
        dst_uri=uas[1].uri + ";transport=udp"))
    report = server.mi("lb_reload")
    assert (report["kept"], report["replaced"]) == ([1, 3], [2])
    listed = server.mi("load_balancer:list")["Destinations"]
    assert [(d["id"], d["Resources"][0]["max"], d["Resources"][0]["load"]) for d in listed] == [
        (1, 2, 2), (2, 2, 0), (3, 3, 2)]
    after = [caller.call() for _ in range(3)]  # 2 fit on the new uas2 row, 1 on uas3
    assert sorted(answered_by(leg, uas) for leg in after) == ["uas2", "uas2", "uas3"]
    assert caller.call().status == 503
    assert server.loads() == [2, 2, 3]

    for leg in legs + after:
        assert leg.bye() == 200
    wait_for(lambda: server.loads() == [0, 0, 0], what="every count released")
    stats = server.mi("get_statistics", [["load_balancer:"]])
    assert stats["load_balancer:active_calls"] == 0
    assert stats["load_balancer:started_calls"] == 6 + 1 + 1 + 3
    assert stats["load_balancer:no_capacity"] == 3
    assert server.mi("dlg_list") == {"Dialogs": []}


def test_a_destination_answering_503_is_replaced_by_the_next_one(world):
    uas_factory, sipline_factory = world
    uas = [uas_factory("uas1", "uas_lb_reject.xml"), uas_factory("uas2"), uas_factory("uas3")]
    server, caller = sipline_factory(uas)
    leg = caller.call()  # uas1 first (equal loads, lowest id): 503, then lb_next -> uas2
    assert leg.status == 200 and answered_by(leg, uas) == "uas2"
    assert leg.callid in uas[0].invites() and leg.callid in uas[1].invites()
    assert server.loads() == [0, 1, 0]
    assert server.mi("get_statistics", [["load_balancer:failovers"]]) == {
        "load_balancer:failovers": 1}
    assert leg.bye() == 200
    wait_for(lambda: server.loads() == [0, 0, 0], what="released")


def test_probing_disables_a_stopped_uas_and_enables_it_when_it_is_back(world):
    uas_factory, sipline_factory = world
    uas = [uas_factory(f"uas{i}") for i in (1, 2, 3)]
    settings = """
probing_interval = 0.2
probing_timeout = 0.3
probing_failure_threshold = 2
probing_success_threshold = 2
"""
    server, caller = sipline_factory(uas, settings, probe_mode=2)
    wait_for(lambda: all(d["last_probe"] == 200 for d in server.mi("lb_list")["Destinations"]),
             timeout=5, what="first probes answered")
    uas[1].stop()
    stopped = time.monotonic()
    # threshold 2 at 0.2 s intervals with 0.3 s timeouts: disabled within ~1 s
    wait_for(lambda: server.enabled() == [True, False, True], timeout=3, what="uas2 disabled")
    assert time.monotonic() - stopped < 2.5
    (dst2,) = [d for d in server.mi("lb_list")["Destinations"] if d["id"] == 2]
    assert dst2["state"] == "disabled (probing)" and dst2["last_probe"] == 408
    legs = [caller.call() for _ in range(4)]
    assert sorted(answered_by(leg, uas) for leg in legs) == ["uas1", "uas1", "uas3", "uas3"]
    assert caller.call().status == 503  # uas2's free slots are not used while it is down
    uas[1].start()  # same port
    wait_for(lambda: server.enabled() == [True, True, True], timeout=5, what="uas2 enabled")
    back = caller.call()
    assert back.status == 200 and answered_by(back, uas) == "uas2"
    stats = server.mi("get_statistics", [["load_balancer:dst_2_enabled",
                                          "load_balancer:probes_failed"]])
    assert stats["load_balancer:dst_2_enabled"] == 1
    assert stats["load_balancer:probes_failed"] >= 2
    for leg in legs + [back]:
        assert leg.bye() == 200
    wait_for(lambda: server.loads() == [0, 0, 0], what="released")
