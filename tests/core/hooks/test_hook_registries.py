"""register_mi_commands, register_statistics and register_script_api."""

from __future__ import annotations

import gc

import pytest
from hookkit import sip_request, start_fails

from sipline.hooks import hookimpl
from sipline.sip import make_response, parse_message
from sipline.testing import SipClient, inprocess_server, wait_for

# -------------------------------------------------------- register_mi_commands


def lb_reload() -> str:
    return "reloaded"


async def lb_status() -> dict:
    return {"gateways": 0}


class MiPlugin:
    def __init__(self, *names: str) -> None:
        self.names = names or ("lb:reload",)

    @hookimpl
    def register_mi_commands(self, register):
        for name in self.names:
            register(name, lb_reload, help="reload the gateways", alias="lb_reload")


def test_hook_register_mi_commands_lands_in_server():
    class Status:
        @hookimpl
        def register_mi_commands(self, register):
            register("lb:status", lb_status, params=["set"])

    with inprocess_server(plugins=[("lb", MiPlugin()), ("status", Status())]) as srv:
        commands = srv.server.mi_commands
        assert set(commands) == {"lb:reload", "lb:status"}
        assert commands["lb:reload"] == {
            "plugin": "lb",
            "function": lb_reload,
            "help": "reload the gateways",
            "alias": "lb_reload",
        }
        assert commands["lb:status"]["plugin"] == "status"
        assert commands["lb:status"]["params"] == ["set"]


def test_hook_register_mi_commands_duplicate_names_both_plugins():
    error = start_fails([("lb", MiPlugin("lb:reload")), ("lb2", MiPlugin("lb:reload"))])
    message = str(error)
    assert "lb:reload" in message
    assert "'lb'" in message and "'lb2'" in message


def test_hook_register_mi_commands_failure_names_plugin():
    class Broken:
        @hookimpl
        def register_mi_commands(self, register):
            register()  # wrong call: TypeError inside the hook

    assert "'broken'" in str(start_fails([("broken", Broken())]))


# --------------------------------------------------------- register_statistics


class Stats:
    def __init__(self, *names: str) -> None:
        self.names = names

    @hookimpl
    def register_statistics(self, register):
        for name in self.names:
            register(name, kind="counter", help=f"{name} events")


def test_hook_register_statistics_lands_in_server():
    class Gauge:
        @hookimpl
        def register_statistics(self, register):
            register("usrloc:contacts", kind="gauge", function=lambda: 7)

    plugins = [("registrar", Stats("registrar:accepted_regs", "registrar:rejected_regs")),
               ("usrloc", Gauge())]
    with inprocess_server(plugins=plugins) as srv:
        stats = srv.server.statistics
        assert set(stats) == {"registrar:accepted_regs", "registrar:rejected_regs", "usrloc:contacts"}
        assert stats["registrar:accepted_regs"] == {
            "plugin": "registrar",
            "kind": "counter",
            "help": "registrar:accepted_regs events",
        }
        assert stats["usrloc:contacts"]["plugin"] == "usrloc"
        assert stats["usrloc:contacts"]["function"]() == 7


def test_hook_register_statistics_name_needs_group():
    message = str(start_fails([("bad", Stats("accepted_regs"))]))
    assert "'bad'" in message and "group:name" in message


def test_hook_register_statistics_duplicate_is_an_error():
    message = str(start_fails([("one", Stats("core:hits")), ("two", Stats("core:hits"))]))
    assert "core:hits" in message


def test_hook_register_statistics_duplicate_names_both_plugins():
    message = str(start_fails([("one", Stats("core:hits")), ("two", Stats("core:hits"))]))
    assert "'one'" in message and "'two'" in message


# --------------------------------------------------------- register_script_api


class Registrar:
    """A script API: ``ctx.registrar``, built by a counting factory."""

    def __init__(self, name: str = "registrar") -> None:
        self.name = name
        self.built_for: list[object] = []

    def factory(self, ctx):
        self.built_for.append(ctx)
        return RegistrarApi(ctx)

    @hookimpl
    def register_script_api(self, register):
        register(self.name, self.factory)


class RegistrarApi:
    def __init__(self, ctx) -> None:
        self.ctx = ctx

    def answer(self):
        return self.ctx.reply(200, f"Saved {self.ctx.msg.method}")


class UsesApi:
    """A plugin (as a routing script would) calling another plugin's API."""

    def __init__(self) -> None:
        self.same_object: list[bool] = []

    @hookimpl
    def route_request(self, ctx):
        if ctx.msg.method != "REGISTER":
            return None
        first = ctx.registrar
        self.same_object.append(ctx.registrar is first)
        return first.answer()


def test_hook_register_script_api_reachable_from_ctx(client_for):
    registrar, user = Registrar(), UsesApi()
    with inprocess_server(plugins=[("user", user), ("registrar", registrar)]) as srv:
        assert srv.server.script_api == {"registrar": registrar.factory}
        client = client_for(srv)
        for _ in range(2):
            answer = client.request(sip_request(srv, client, "REGISTER"))
            assert (answer.status, answer.reason) == (200, "Saved REGISTER")
    # The factory ran once per context, however often the attribute was read.
    assert len(registrar.built_for) == 2
    assert registrar.built_for[0] is not registrar.built_for[1]
    assert user.same_object == [True, True]


def test_hook_register_script_api_unknown_name_is_attribute_error(client_for):
    errors: list[str] = []

    class Probe:
        @hookimpl
        def route_request(self, ctx):
            try:
                ctx.nonexistent
            except AttributeError as exc:
                errors.append(str(exc))
            return None

    with inprocess_server(plugins=[("probe", Probe()), ("registrar", Registrar())]) as srv:
        client = client_for(srv)
        assert client.request(sip_request(srv, client)).status == 200
    [message] = errors
    assert "'nonexistent'" in message and "registrar" in message


def test_hook_register_script_api_duplicate_names_both_plugins():
    message = str(start_fails([("reg1", Registrar()), ("reg2", Registrar())]))
    assert "'registrar'" in message
    assert "'reg1'" in message and "'reg2'" in message


@pytest.mark.parametrize("name", ["_private", "not-an-identifier", "reply", "flags"])
def test_hook_register_script_api_rejects_bad_names(name):
    message = str(start_fails([("bad", Registrar(name))]))
    assert "'bad'" in message and repr(name) in message


class BackPointingApi:
    """The usual shape of a script API: it keeps the context it was made for."""

    def __init__(self, ctx) -> None:
        self.ctx = ctx


class ProvidesProbe:
    @hookimpl
    def register_script_api(self, register):
        register("probe", BackPointingApi)


class UsesProbe:
    def __init__(self, relay_to=None) -> None:
        self.relay_to = relay_to

    @hookimpl
    def route_request(self, ctx):
        api = ctx.probe
        if self.relay_to is not None:
            return api.ctx.relay(self.relay_to)
        return api.ctx.reply(200, "probed")


def _live_apis() -> int:
    return sum(1 for o in gc.get_objects() if type(o) is BackPointingApi)


@pytest.mark.parametrize("relayed", [False, True], ids=["answered", "relayed"])
def test_hook_script_api_objects_do_not_keep_the_request_alive(client_for, relayed):
    # ctx -> API cache -> API -> ctx is a cycle: the core breaks it once the request
    # is finished, so a call's objects die by reference counting, not by the collector.
    uas = SipClient(("127.0.0.1", 9), "udp") if relayed else None  # a UDP peer on loopback
    user = UsesProbe(f"sip:{uas.local_hostport}" if uas else None)
    gc.collect()
    gc.disable()
    try:
        with inprocess_server(plugins=[("user", user), ("probe", ProvidesProbe())]) as srv:
            client = client_for(srv)
            for i in range(3):
                client.send(sip_request(srv, client, "MESSAGE", call_id=f"probe-{i}"))
                if uas is not None:
                    request = parse_message(uas.recv())
                    uas.sock.sendto(make_response(request, 200).to_bytes(), srv.address("udp"))
                answer = parse_message(client.recv())
                assert answer.status == 200
            # (the server thread may still be finishing the last request)
            wait_for(lambda: _live_apis() == 0, timeout=2,
                     what="no script API object left (a reference cycle keeps them)")
    finally:
        gc.enable()
        if uas is not None:
            uas.close()
