"""``sipline mi``: argument typing, output formats, exit codes (against an in-process server)."""

from __future__ import annotations

import json

from sipline.cli import main
from sipline.mi.client import build_params, coerce, render, split_args
from sipline.testing import free_port
from test_mi_commands import TOKEN, Acl, mi_server

SCHEMA = [
    {"name": "aor", "type": "string", "required": True},
    {"name": "expires", "type": "integer", "required": True},
    {"name": "q", "type": "number", "required": False},
]


def test_split_args():
    assert split_args(["a", "b=1", "sip:x;transport=tcp", "=x"]) == (
        ["a", "sip:x;transport=tcp", "=x"], {"b": "1"})


def test_coerce_by_type():
    assert coerce("10", "integer") == 10
    assert coerce("10", "string") == "10"
    assert coerce("0.5", "number") == 0.5
    assert coerce("yes", "boolean") is True
    assert coerce('{"a": 1}', "object") == {"a": 1}
    assert coerce("core:", "array|string") == "core:"
    assert coerce("[1]", "any") == [1] and coerce("x", "any") == "x"
    assert coerce("ten", "integer") == "ten"  # the server explains what is wrong


def test_build_params():
    assert build_params(SCHEMA, [], {}) is None
    assert build_params(SCHEMA, ["alice@x", "3600", "0.5"], {}) == ["alice@x", 3600, 0.5]
    assert build_params(SCHEMA, [], {"expires": "60", "aor": "123"}) == {
        "expires": 60, "aor": "123"}
    stats = [{"name": "statistics", "type": "array|string", "required": True}]
    assert build_params(stats, ["core:", "tm:"], {}) == [["core:", "tm:"]]
    assert build_params(None, ["1", "x"], {}) == [1, "x"]


def test_render_shapes():
    assert render(None) == ["OK"]
    assert render(True) == ["yes"]
    rows = render({"Processes": [{"ID": 0, "PID": 12, "Type": "SIP worker"},
                                 {"ID": 1, "PID": 345, "Type": "x"}]})
    assert rows[0].split() == ["ID", "PID", "TYPE"]
    assert rows[2].split() == ["1", "345", "x"]
    pairs = render({"core:rcv_requests": 3, "core:bad_msg_hdr": 0})
    assert pairs == ["core:rcv_requests  3", "core:bad_msg_hdr   0"]
    dump = render({"alice@x": [{"contact": "sip:a", "q": None}], "bob@x": []})
    assert dump[0] == "alice@x:" and dump[1].split() == ["CONTACT", "Q"]
    assert dump[2].split() == ["sip:a", "-"] and dump[3:] == ["bob@x:", "  (none)"]
    assert render([]) == ["(none)"]


def test_cli_against_a_server(tmp_path, capsys):
    sock = str(tmp_path / "mi.sock")
    with mi_server(tmp_path, [("acl", Acl())]) as (_, _, port):
        assert main(["mi", "--socket", sock, "get_statistics", "core:", "acl:"]) == 0
        table = capsys.readouterr().out
        assert "core:rcv_requests" in table and "acl:rules" in table

        assert main(["mi", "--socket", sock, "--json", "ps"]) == 0
        assert json.loads(capsys.readouterr().out)["Processes"][0]["ID"] == 0

        assert main(["mi", "--url", f"http://127.0.0.1:{port}/mi", "acl_reload", "rules"]) == 0
        assert capsys.readouterr().out.split() == ["reloaded", "rules"]

        assert main(["mi", "--socket", sock, "get_statistics", "nosuch:"]) == 1
        err = capsys.readouterr().err
        assert "no statistics group 'nosuch'" in err and "-32602" in err

        assert main(["mi", "--socket", sock, "no_such_command"]) == 1
        assert "-32601" in capsys.readouterr().err

        assert main(["mi", "--socket", sock, "log_level", "debug", "logger=x"]) == 2
        assert "not both" in capsys.readouterr().err

    assert main(["mi", "--socket", sock, "ps"]) == 5  # nobody there any more
    assert "cannot reach the MI socket" in capsys.readouterr().err
    assert main(["mi", "--url", f"127.0.0.1:{free_port()}", "ps"]) == 5


def test_cli_token_and_config(tmp_path, capsys):
    port = free_port()
    config = tmp_path / "sipline.toml"
    config.write_text(f'[mi]\nhttp = "127.0.0.1:{port}"\nsocket = false\ntoken = "{TOKEN}"\n')
    with mi_server(tmp_path, mi={"http": f"127.0.0.1:{port}", "token": TOKEN, "socket": False}):
        # no socket configured: the client uses [mi] http with [mi] token
        assert main(["mi", "-c", str(config), "uptime"]) == 0
        assert "uptime" in capsys.readouterr().out
        assert main(["mi", "--url", f"127.0.0.1:{port}", "uptime"]) == 5
        assert "bearer token" in capsys.readouterr().err
        assert main(["mi", "--url", f"127.0.0.1:{port}", "--token", TOKEN, "uptime"]) == 0
    bad = tmp_path / "bad.toml"
    bad.write_text("[mi]\nhttp = 'nowhere'\n")
    assert main(["mi", "-c", str(bad), "ps"]) == 2
    assert "[mi] http" in capsys.readouterr().err
