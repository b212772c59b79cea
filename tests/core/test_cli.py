"""The ``sipline`` command line, run as real subprocesses."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from sipline import __version__
from sipline.testing import ServerProcess, SipClient, free_port, options_request


def sipline(*args: str, cwd=None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sipline", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
    )


@pytest.mark.parametrize("args", [[], ["run"], ["check"], ["plugins"], ["version"]])
def test_help_everywhere(args):
    out = sipline(*args, "--help")
    assert out.returncode == 0
    assert "usage: sipline" in out.stdout


def test_no_command_is_a_usage_error():
    out = sipline()
    assert out.returncode == 2
    assert "usage:" in out.stderr


def test_version():
    out = sipline("version")
    assert out.returncode == 0
    assert out.stdout.strip() == f"sipline {__version__}"
    assert sipline("--version").stdout.strip() == f"sipline {__version__}"


def test_check_builtin_default():
    out = sipline("check")
    assert out.returncode == 0, out.stderr
    assert "built-in default configuration: OK" in out.stdout
    assert "udp:127.0.0.1:5060" in out.stdout


def test_check_reports_unknown_key_wrong_type_unknown_plugin(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[server]\nlisten = ["udp:127.0.0.1:5060"]\nworkers = "many"\n'
                   'plugins = ["no_such_plugin"]\nlisten_on = 1\n')
    out = sipline("check", "-c", str(cfg))
    assert out.returncode == 1
    assert f"error: {cfg}: [server] listen_on: unknown key" in out.stderr
    assert f"error: {cfg}: [server] workers:" in out.stderr and "valid integer" in out.stderr
    assert "unknown plugin 'no_such_plugin'" in out.stderr
    assert out.stdout == ""


def test_script_path_is_relative_to_config_file(tmp_path):
    conf_dir = tmp_path / "etc"
    conf_dir.mkdir()
    (conf_dir / "routes.py").write_text("def route_request(ctx):\n    return None\n")
    (conf_dir / "sipline.toml").write_text('[server]\nscript = "routes.py"\n')
    out = sipline("check", "-c", "etc/sipline.toml", cwd=tmp_path)
    assert out.returncode == 0, out.stderr


def test_script_syntax_error_names_file_and_line(tmp_path):
    (tmp_path / "routes.py").write_text("def route_request(ctx):\n    return (\n")
    (tmp_path / "sipline.toml").write_text('[server]\nscript = "routes.py"\n')
    out = sipline("check", "-c", str(tmp_path / "sipline.toml"))
    assert out.returncode == 1
    assert f"{tmp_path / 'routes.py'}:" in out.stderr and "syntax error" in out.stderr


def test_script_with_no_stage_is_refused(tmp_path):
    (tmp_path / "routes.py").write_text("def helper():\n    pass\n")
    (tmp_path / "sipline.toml").write_text('[server]\nscript = "routes.py"\n')
    out = sipline("check", "-c", str(tmp_path / "sipline.toml"))
    assert out.returncode == 1
    assert "defines none of the route stages" in out.stderr


def test_run_with_port_in_use_exits_3(tmp_path):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.0.1", 0))
        port = busy.getsockname()[1]
        cfg = tmp_path / "s.toml"
        cfg.write_text(f'[server]\nlisten = ["udp:127.0.0.1:{port}"]\n')
        out = sipline("run", "-c", str(cfg), timeout=30)
    assert out.returncode == 3
    assert f"cannot listen on udp:127.0.0.1:{port}" in out.stderr


def test_run_invalid_config_exits_1(tmp_path):
    cfg = tmp_path / "s.toml"
    cfg.write_text("[server]\nworkers = -1\n")
    out = sipline("run", "-c", str(cfg))
    assert out.returncode == 1
    assert "[server] workers" in out.stderr


def child_pids(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def test_run_with_script_and_workers(tmp_path):
    port = free_port()
    (tmp_path / "routes.py").write_text(
        "def route_request(ctx):\n"
        "    if ctx.msg.method == 'OPTIONS' and getattr(ctx.msg.uri, 'user', None) == 'script':\n"
        "        return ctx.reply(200, 'Scripted')\n"
    )
    config = (
        f'[server]\nlisten = ["udp:127.0.0.1:{port}", "tcp:127.0.0.1:{port}"]\n'
        f'script = "{tmp_path / "routes.py"}"\nworkers = 2\n'
    )
    proc = ServerProcess(config, tmp_path).start(probe=("127.0.0.1", port))
    try:
        for _ in range(6):  # SO_REUSEPORT spreads sources over both workers
            c = SipClient(("127.0.0.1", port))
            resp = c.request(options_request(f"127.0.0.1:{port}", local=c.local_hostport,
                                             ruri=f"sip:script@127.0.0.1:{port}"))
            c.close()
            assert (resp.status, resp.reason) == (200, "Scripted")
        assert len(child_pids(proc.proc.pid)) == 2
    finally:
        assert proc.stop() == 0, proc.log()


def test_sighup_reloads_the_routing_script(tmp_path):
    import signal as _signal
    import time

    port = free_port()
    script = tmp_path / "routes.py"

    def version(tag: str) -> str:
        return (
            "def route_request(ctx):\n"
            "    if getattr(ctx.msg.uri, 'user', None) == 'ver':\n"
            f"        return ctx.reply(200, {tag!r})\n"
        )

    script.write_text(version("v1"))
    config = f'[server]\nlisten = ["udp:127.0.0.1:{port}"]\nscript = "{script}"\n'
    proc = ServerProcess(config, tmp_path).start(probe=("127.0.0.1", port))

    def ask() -> str:
        c = SipClient(("127.0.0.1", port))
        try:
            return c.request(options_request(f"127.0.0.1:{port}", local=c.local_hostport,
                                             ruri=f"sip:ver@127.0.0.1:{port}")).reason
        finally:
            c.close()

    def wait_for(reason: str) -> str:
        deadline = time.monotonic() + 10
        got = ask()
        while got != reason and time.monotonic() < deadline:
            time.sleep(0.05)
            got = ask()
        return got

    try:
        assert ask() == "v1"
        script.write_text(version("v2"))
        proc.proc.send_signal(_signal.SIGHUP)
        assert wait_for("v2") == "v2"
        script.write_text("def route_request(ctx)\n    pass\n")  # syntax error
        proc.proc.send_signal(_signal.SIGHUP)
        deadline = time.monotonic() + 10
        while "not reloaded" not in proc.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "routing script not reloaded" in proc.log()
        assert "syntax error" in proc.log()
        assert ask() == "v2"
    finally:
        assert proc.stop() == 0, proc.log()
