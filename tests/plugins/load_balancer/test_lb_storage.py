"""The ``load_balancer`` table: the Alembic branch, loading at startup, ``lb_reload`` keeping
the counts of unchanged destinations (from the table and from the TOML file), counts rebuilt
from persisted dialogs after a restart, and the wheel."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from lbkit import LB_SCRIPT, Caller, Gateway, script
from sipline import db
from sipline.config import build_config
from sipline.mi.jsonrpc import MIError
from sipline.plugins import build_plugin_manager
from sipline.routing.default import CoreDefaults
from sipline.testing import (
    InProcessServer,
    free_port,
    inprocess_server,
    migration_round_trip,
    wait_for,
)
from sipline_dialog import DialogPlugin
from sipline_load_balancer import LoadBalancerPlugin
from sipline_load_balancer.models import Base, load_balancer
from sqlalchemy import create_engine, delete, insert, update
from sqlalchemy.pool import NullPool

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def gateways():
    made = [Gateway(f"gw{i}") for i in range(1, 4)]
    yield made
    for g in made:
        g.close()


def execute(url: str, *statements) -> None:
    """Run statements in one transaction; a list after a statement is its rows."""
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            for statement in statements:
                if isinstance(statement, list):
                    continue
                following = statements[statements.index(statement) + 1:][:1]
                if following and isinstance(following[0], list):
                    conn.execute(statement, following[0])
                else:
                    conn.execute(statement)
    finally:
        engine.dispose()


def rows(gws, capacity=2):
    return [{"id": i, "group_id": 1, "dst_uri": g.uri, "resources": f"pstn={capacity}",
             "probe_mode": 0, "description": g.name} for i, g in enumerate(gws, 1)]


def config(url: str, **dialog) -> dict:
    return {
        "server": {"listen": [f"udp:127.0.0.1:{free_port()}"], "timer_interval": 0.05},
        "database": {"url": url},
        "plugins": {"dialog": dialog, "load_balancer": {"probing_interval": 0}},
    }


def loads(lb) -> dict[int, int]:
    return {d.id: d.load["pstn"] for d in lb.require()}


def test_migration_round_trip(database_url):
    migration_round_trip(database_url, "load_balancer", Base.metadata)
    assert [c.name for c in load_balancer.columns] == [
        "id", "group_id", "dst_uri", "resources", "probe_mode", "attrs", "description"]


def test_wheel_carries_its_migrations_and_entry_points(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-index", "-w", str(tmp_path), str(ROOT / "plugins" / "load_balancer")],
        check=True, capture_output=True, timeout=300,
    )
    (wheel,) = tmp_path.glob("sipline_load_balancer-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        assert "sipline_load_balancer/migrations/load_balancer_0001_load_balancer.py" in names
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        text = zf.read(entry_points).decode()
    assert "[sipline.migrations]\nload_balancer = sipline_load_balancer.migrations" in text
    assert "[sipline]\nload_balancer = sipline_load_balancer.plugin" in text


def test_table_loaded_at_startup_and_lb_reload_keeps_unchanged_counts(
        database_url, gateways, tmp_path):
    db.upgrade(database_url)
    execute(database_url, insert(load_balancer), rows(gateways))
    execute(database_url, insert(load_balancer).values(
        id=9, group_id=1, dst_uri="sip:192.0.2.9", resources="pstn=nope"))  # skipped, logged
    lb = LoadBalancerPlugin()
    routes = script(tmp_path, LB_SCRIPT)
    with inprocess_server(config(database_url), [("dialog", DialogPlugin()),
                                                  ("load_balancer", lb)], script=routes) as srv:
        assert [d.description for d in lb.require()] == ["gw1", "gw2", "gw3"]
        caller = Caller(srv.address())
        try:
            legs = [caller.call() for _ in range(6)]
            assert loads(lb) == {1: 2, 2: 2, 3: 2}
            # gw2 grows, gw3 moves to another group, gw4 appears, row 9 is fixed
            execute(database_url,
                    update(load_balancer).where(load_balancer.c.id == 2).values(
                        resources="pstn=4;transc=1"),
                    update(load_balancer).where(load_balancer.c.id == 3).values(group_id=2),
                    update(load_balancer).where(load_balancer.c.id == 9).values(
                        resources="pstn=0"),
                    insert(load_balancer).values(id=4, group_id=2, dst_uri="sip:192.0.2.4",
                                                 resources="pstn=1"))
            report = srv.call(lb.mi_reload())
            assert report == {"destinations": 5, "kept": [1, 2], "added": [4, 9],
                              "replaced": [3], "removed": [], "errors": []}
            assert loads(lb) == {1: 2, 2: 2, 3: 0, 4: 0, 9: 0}
            assert lb.require().get(2).caps == {"pstn": 4, "transc": 1}
            assert "load_balancer:dst_4_load" in srv.server.statistics
            # the new capacity takes effect: two more calls fit on gw2
            more = [caller.call() for _ in range(2)]
            assert all(leg.callid in gateways[1].invites for leg in more)
            # the calls counted on the old gw3 end without touching the new one
            for leg in legs + more:
                assert leg.bye() == 200
            wait_for(lambda: set(loads(lb).values()) == {0}, what="every count released")
            # an emptied table empties the balancer
            execute(database_url, delete(load_balancer))
            assert srv.call(lb.mi_reload())["destinations"] == 0
        finally:
            caller.close()


def test_toml_destinations_reload_from_the_file(tmp_path, gateways):
    port = free_port()
    text = """
[server]
listen = ["udp:127.0.0.1:{port}"]
plugins = ["dialog", "load_balancer"]

[database]
url = "sqlite:///{db}"

[plugins.load_balancer]
probing_interval = 0
{dsts}
"""
    entry = ("[[plugins.load_balancer.destinations]]\ngroup_id = 1\ndst_uri = \"{uri}\"\n"
             "resources = \"{res}\"\n")
    path = tmp_path / "sipline.toml"

    def write(dsts):
        path.write_text(text.format(port=port, db=tmp_path / "lb.db", dsts="".join(
            entry.format(uri=g.uri, res=res) for g, res in dsts)))

    write([(gateways[0], "pstn=1"), (gateways[1], "pstn=1")])
    url = f"sqlite:///{tmp_path / 'lb.db'}"
    db.upgrade(url)
    lb = LoadBalancerPlugin()
    dialog = DialogPlugin()
    objects = {"dialog": dialog, "load_balancer": lb}
    from sipline.config import load_toml

    cfg = build_config(load_toml(path), source=path, installed_plugins=list(objects),
                       model_for=lambda n: objects[n].config_model())
    pm = build_plugin_manager(list(objects.items()), defaults=CoreDefaults(),
                              script=script(tmp_path, LB_SCRIPT))
    srv = InProcessServer(cfg, pm).start()
    caller = Caller(srv.address())
    try:
        leg = caller.call()
        assert leg.status == 200 and loads(lb) == {1: 1, 2: 0}
        write([(gateways[0], "pstn=3"), (gateways[2], "pstn=1")])  # 2 is now gw3
        assert srv.call(lb.mi_reload())["kept"] == [1]
        assert loads(lb) == {1: 1, 2: 0} and lb.require().get(2).uri == gateways[2].uri
        path.write_text(path.read_text().replace('resources = "pstn=1"', 'resources = "x"'))
        with pytest.raises(MIError, match="not reloaded, the current ones stay"):
            srv.call(lb.mi_reload())
        assert lb.require().get(2).uri == gateways[2].uri
        assert leg.bye() == 200
    finally:
        caller.close()
        srv.stop()


def test_counts_come_back_with_dialogs_reloaded_after_a_restart(tmp_path, gateways):
    url = f"sqlite:///{tmp_path / 'lb.db'}"
    db.upgrade(url)
    execute(url, insert(load_balancer), rows(gateways))
    port = free_port()
    settings = config(url, db_mode="write-through")
    settings["server"]["listen"] = [f"udp:127.0.0.1:{port}"]
    routes = script(tmp_path, LB_SCRIPT)
    caller = Caller(("127.0.0.1", port))
    try:
        lb = LoadBalancerPlugin()
        with inprocess_server(settings, [("dialog", DialogPlugin()), ("load_balancer", lb)],
                              script=routes):
            legs = [caller.call() for _ in range(4)]
            assert loads(lb) == {1: 2, 2: 1, 3: 1}
        lb = LoadBalancerPlugin()
        with inprocess_server(settings, [("dialog", DialogPlugin()), ("load_balancer", lb)],
                              script=routes):
            assert loads(lb) == {1: 2, 2: 1, 3: 1} and len(lb.calls) == 4
            for leg in legs:
                assert leg.bye() == 200
            wait_for(lambda: loads(lb) == {1: 0, 2: 0, 3: 0}, what="released after restart")
    finally:
        caller.close()
