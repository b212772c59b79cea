"""The JSON-RPC 2.0 dispatcher: every error code, batches, notifications, params, aliases."""

from __future__ import annotations

import asyncio
import json

import pytest
from sipline.mi.jsonrpc import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    SERVER_ERROR,
    Command,
    CommandTable,
    Dispatcher,
    MIError,
    Param,
    schema_for,
)

CALLS: list[tuple] = []


def show_contact(aor: str, limit: int = 10) -> dict:
    CALLS.append(("show_contact", aor, limit))
    return {"aor": aor, "limit": limit}


async def slow_reload() -> str:
    await asyncio.sleep(0.01)
    return "reloaded"


def broken() -> None:
    raise RuntimeError("the table is gone")


def refuses() -> None:
    raise MIError("not now: a reload is running")


def bad_value(expires: int) -> None:
    raise ValueError("expires must be positive")


def untyped(*args, **kwargs):
    return {"args": list(args), "kwargs": kwargs}


@pytest.fixture
def dispatcher() -> Dispatcher:
    CALLS.clear()
    table = CommandTable()
    table.add(Command("usrloc:show_contact", show_contact,
                      schema_for(show_contact, {"aor": str, "limit": int}),
                      "bindings of an AOR", "ul_show_contact", "registrar"))
    table.add(Command("load_balancer:reload", slow_reload, schema_for(slow_reload, {}),
                      alias="lb_reload", plugin="lb"))
    table.add(Command("test:broken", broken, ()))
    table.add(Command("test:refuses", refuses, ()))
    table.add(Command("test:bad_value", bad_value, schema_for(bad_value)))
    table.add(Command("test:untyped", untyped, schema_for(untyped)))
    return Dispatcher(table)


def run(dispatcher: Dispatcher, payload) -> object:
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    answer = asyncio.run(dispatcher.handle_bytes(data))
    return None if answer is None else json.loads(answer)


def req(method, params=None, id=1) -> dict:
    out = {"jsonrpc": "2.0", "method": method, "id": id}
    if params is not None:
        out["params"] = params
    return out


def error_code(answer) -> int:
    return answer["error"]["code"]


# ----------------------------------------------------------------------- successes
def test_named_params(dispatcher):
    answer = run(dispatcher, req("usrloc:show_contact", {"aor": "alice@example.com"}))
    assert answer == {"jsonrpc": "2.0", "id": 1,
                      "result": {"aor": "alice@example.com", "limit": 10}}


def test_positional_params(dispatcher):
    answer = run(dispatcher, req("usrloc:show_contact", ["bob@example.com", 3], id="abc"))
    assert answer["result"] == {"aor": "bob@example.com", "limit": 3}
    assert answer["id"] == "abc"


def test_classic_alias_resolves_to_the_module_command(dispatcher):
    assert run(dispatcher, req("ul_show_contact", ["x@y"]))["result"]["aor"] == "x@y"
    assert run(dispatcher, req("lb_reload"))["result"] == "reloaded"
    assert run(dispatcher, req("load_balancer:reload"))["result"] == "reloaded"


def test_async_command_is_awaited(dispatcher):
    assert run(dispatcher, req("lb_reload", []))["result"] == "reloaded"


def test_null_id_is_a_request_not_a_notification(dispatcher):
    answer = run(dispatcher, req("lb_reload", id=None))
    assert answer == {"jsonrpc": "2.0", "result": "reloaded", "id": None}


def test_command_without_schema_gets_what_it_is_given(dispatcher):
    assert run(dispatcher, req("test:untyped", [1, "a"]))["result"] == {
        "args": [1, "a"], "kwargs": {}}
    assert run(dispatcher, req("test:untyped", {"k": True}))["result"] == {
        "args": [], "kwargs": {"k": True}}


# ----------------------------------------------------------------------- notifications
def test_notification_gets_no_answer_but_runs(dispatcher):
    request = {"jsonrpc": "2.0", "method": "ul_show_contact", "params": ["n@x"]}
    assert run(dispatcher, request) is None
    assert CALLS == [("show_contact", "n@x", 10)]


def test_notification_errors_are_silent_too(dispatcher):
    assert run(dispatcher, {"jsonrpc": "2.0", "method": "nope"}) is None
    assert run(dispatcher, {"jsonrpc": "2.0", "method": "test:broken"}) is None
    assert run(dispatcher, {"jsonrpc": "2.0", "method": "ul_show_contact", "params": []}) is None


# ----------------------------------------------------------------------- -32700
@pytest.mark.parametrize("body", [b"{not json", b'{"jsonrpc": "2.0", "method"', b"\xff\xfe",
                                  b""])
def test_parse_error(dispatcher, body):
    answer = run(dispatcher, body)
    assert error_code(answer) == PARSE_ERROR
    assert answer["id"] is None
    assert answer["error"]["message"].startswith("Parse error")


# ----------------------------------------------------------------------- -32600
@pytest.mark.parametrize("request_obj, why", [
    ({"jsonrpc": "1.0", "method": "lb_reload", "id": 1}, "'jsonrpc' must be exactly"),
    ({"method": "lb_reload", "id": 1}, "'jsonrpc' must be exactly"),
    ({"jsonrpc": 2.0, "method": "lb_reload", "id": 1}, "'jsonrpc' must be exactly"),
    ({"jsonrpc": "2.0", "method": 5, "id": 1}, "'method' must be a string"),
    ({"jsonrpc": "2.0", "id": 1}, "'method' must be a string"),
    ({"jsonrpc": "2.0", "method": "lb_reload", "params": "x", "id": 1}, "'params' must be"),
    ({"jsonrpc": "2.0", "method": "lb_reload", "id": {"a": 1}}, "'id' must be"),
    ({"jsonrpc": "2.0", "method": "lb_reload", "id": 1, "extra": 1}, "unexpected member"),
    (42, "expected an object"),
    ("lb_reload", "expected an object"),
])
def test_invalid_request(dispatcher, request_obj, why):
    answer = run(dispatcher, request_obj)
    assert error_code(answer) == INVALID_REQUEST
    assert why in answer["error"]["message"]


def test_wrong_version_keeps_the_id(dispatcher):
    answer = run(dispatcher, {"jsonrpc": "1.0", "method": "lb_reload", "id": 7})
    assert answer["id"] == 7


def test_empty_batch_is_one_invalid_request(dispatcher):
    answer = run(dispatcher, [])
    assert isinstance(answer, dict)
    assert error_code(answer) == INVALID_REQUEST


# ----------------------------------------------------------------------- -32601
def test_unknown_method(dispatcher):
    answer = run(dispatcher, req("ul_show_contacts", ["x"]))
    assert error_code(answer) == METHOD_NOT_FOUND
    assert "'ul_show_contacts'" in answer["error"]["message"]
    assert "which" in answer["error"]["message"]


# ----------------------------------------------------------------------- -32602
@pytest.mark.parametrize("params, why", [
    (None, "missing required parameter 'aor'"),
    ([], "missing required parameter 'aor'"),
    ({"limit": 1}, "missing required parameter 'aor'"),
    (["a", 1, 2], "at most 2 parameter"),
    ({"aor": "a", "bogus": 1}, "unknown parameter 'bogus'"),
    ({"aor": 5}, "parameter 'aor' of usrloc:show_contact must be string, got integer"),
    (["a", "ten"], "parameter 'limit' of usrloc:show_contact must be integer"),
    (["a", 1.5], "must be integer, got number"),
    (["a", True], "must be integer, got boolean"),
    ({"aor": None}, "must be string, got null"),
])
def test_invalid_params(dispatcher, params, why):
    answer = run(dispatcher, req("ul_show_contact", params))
    assert error_code(answer) == INVALID_PARAMS, answer
    message = answer["error"]["message"]
    assert message.startswith("Invalid params: ")
    assert why in message
    assert "usage: usrloc:show_contact aor:string [limit:integer]" in message
    assert CALLS == []


def test_value_error_from_the_command_is_invalid_params(dispatcher):
    answer = run(dispatcher, req("test:bad_value", [0]))
    assert error_code(answer) == INVALID_PARAMS
    assert "expires must be positive" in answer["error"]["message"]


# ----------------------------------------------------------------------- -32603 / -32000
def test_internal_error_names_the_command(dispatcher, caplog):
    answer = run(dispatcher, req("test:broken"))
    assert error_code(answer) == INTERNAL_ERROR
    assert "test:broken failed: RuntimeError: the table is gone" in answer["error"]["message"]
    assert "test:broken" in caplog.text  # logged with the traceback


def test_command_refusal_is_a_server_error(dispatcher):
    answer = run(dispatcher, req("test:refuses"))
    assert error_code(answer) == SERVER_ERROR
    assert answer["error"]["message"] == "not now: a reload is running"


def test_result_json_cannot_express_is_internal_error():
    table = CommandTable()
    table.add(Command("t:nan", lambda: float("nan"), ()))  # json.dumps allows NaN...
    table.add(Command("t:circular", _circular, ()))
    d = Dispatcher(table)
    answer = run(d, req("t:circular", id=3))
    assert error_code(answer) == INTERNAL_ERROR and answer["id"] == 3


def _circular():
    loop: list = []
    loop.append(loop)
    return loop


# ----------------------------------------------------------------------- batches
def test_batch_with_a_mix(dispatcher):
    batch = [
        req("ul_show_contact", ["a@x"], id=1),
        {"jsonrpc": "2.0", "method": "lb_reload"},  # notification: no entry
        req("nope", id=2),
        req("ul_show_contact", {"aor": 1}, id=3),
        {"jsonrpc": "1.0", "method": "lb_reload", "id": 4},
        7,
        req("test:broken", id=5),
        req("lb_reload", id=6),
    ]
    answer = run(dispatcher, batch)
    assert isinstance(answer, list)
    by_id = {a["id"]: a for a in answer}
    assert by_id[1]["result"] == {"aor": "a@x", "limit": 10}
    assert error_code(by_id[2]) == METHOD_NOT_FOUND
    assert error_code(by_id[3]) == INVALID_PARAMS
    assert error_code(by_id[4]) == INVALID_REQUEST
    assert error_code(by_id[5]) == INTERNAL_ERROR
    assert by_id[6]["result"] == "reloaded"
    assert error_code(by_id[None]) == INVALID_REQUEST  # the 7
    assert len(answer) == 7


def test_batch_of_notifications_gets_no_answer(dispatcher):
    batch = [{"jsonrpc": "2.0", "method": "lb_reload"}, {"jsonrpc": "2.0", "method": "nope"}]
    assert run(dispatcher, batch) is None


# ----------------------------------------------------------------------- schemas, table
def test_schema_from_signature_and_from_registration():
    def f(aor: str, q: float = 1.0, flags=None):
        return None

    assert schema_for(f) == (Param("aor", (str,), True), Param("q", (float,), False),
                             Param("flags", None, False))
    assert schema_for(f, ["aor", "q"]) == (Param("aor", None, True), Param("q", None, False))
    assert schema_for(f, {"aor": str, "q": (int, float)}) == (
        Param("aor", (str,), True), Param("q", (int, float), False))
    assert schema_for(untyped) is None


def test_number_param_takes_integers():
    p = Param("q", (float,))
    assert p.accepts(1) and p.accepts(0.5) and not p.accepts("1") and not p.accepts(True)


def test_table_refuses_a_taken_name_or_alias():
    table = CommandTable()
    table.add(Command("usrloc:dump", untyped, None, alias="ul_dump", plugin="registrar"))
    with pytest.raises(ValueError, match="'ul_dump'.*already used by usrloc:dump"):
        table.add(Command("other:dump", untyped, None, alias="ul_dump", plugin="other"))
    with pytest.raises(ValueError, match="'usrloc:dump'"):
        table.add(Command("usrloc:dump", untyped, None, plugin="other"))
    with pytest.raises(ValueError, match="'ul_dump'"):
        table.add(Command("ul_dump", untyped, None, plugin="other"))
