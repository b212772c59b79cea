#!/usr/bin/env python3
"""sipbench: sipline's SIP load benchmark (sipp driven, loopback only). Prints figures, asserts nothing.

How to run
==========

Measure a server that is already running on loopback (its CPU is found through
the owner of the UDP port, or give ``--server-pid``)::

    python bench/sipbench.py --target 127.0.0.1:5170 --scenario options
    python bench/sipbench.py --target 127.0.0.1:5170 --scenario invite --rates 500,1000 --duration 10
    python bench/sipbench.py --target 127.0.0.1:5170 --scenario register --quick --json /tmp/reg.json

Let the script start the server itself (a fresh one, stopped by its PID at the end)::

    python bench/sipbench.py --start sipline --scenario options --quick
    python bench/sipbench.py --start sipline --workers 2 --scenario options
    python bench/sipbench.py --start kamailio --scenario invite

Side by side, sipline against Kamailio in one run: ``python bench/compare.py --help``
(``--compare`` here does the same).

Servers started here: sipline runs as ``python -m sipline run -c sipline.toml`` from a temp dir
(one ``udp:`` listener, ``workers = N``, and for invite/register ``script = "routes.py"``,
whose text comes from :func:`sipline_routes_script` - the function to adjust as the proxy and
registrar APIs evolve - plus the ``registrar`` plugin when it is installed); Kamailio runs
``kamailio -DD -E -f bench/kamailio.cfg -l udp:HOST:PORT -n N``. With N > 1 the caller sipp
uses one socket per call (``--caller-transport``): sipline's workers share the port through
SO_REUSEPORT, which the kernel balances by source address, so a single caller socket would
load a single worker.

Scenarios (sipp XML in ``bench/scenarios/``):

* ``options``  - ``OPTIONS sip:127.0.0.1:PORT`` (no user part) to the server itself, 200 expected.
* ``invite``   - through the server as a record-routing stateful proxy: INVITE -> (100/180)
  -> 200 -> ACK -> pause (``--pause-ms``, 100) -> BYE -> 200. A sipp UAS (``uas.xml``) on
  ``--uas-port`` answers; it is REGISTERed as ``uas`` first (``uas_register.xml``). ACK and BYE
  go to the callee's Contact with a Route set from the Record-Route of the 200, so they come
  back through the proxy. A server without a registrar must route ``uas`` statically to
  127.0.0.1:UAS_PORT; the driver only warns when the REGISTER is not answered 200.
* ``register`` - REGISTER of a fresh AOR per call (Expires 3600, no credentials), 200 expected.
* ``register_auth`` - REGISTER -> 401 -> REGISTER with digest credentials (MD5, qop=auth: what
  sipp implements) -> 200, by one of 1000 provisioned subscribers (SIPp 3.6 takes credentials
  only from ``-au``/``-ap``), a fresh Call-ID per call. sipline:
  the ``auth`` and ``registrar`` plugins, subscribers in its SQLite database (served from
  memory); Kamailio: ``auth_check`` with ``auth_db`` on SQLite (``-A WITH_AUTH``; needs the
  Debian package ``kamailio-sqlite-modules``).
* ``register_wb`` - as ``register``, with the location table written back to SQLite every 10 s
  (sipline ``db_mode = "write-back"``; Kamailio usrloc ``db_mode=2`` with ``db_sqlite``,
  ``-A WITH_WRITEBACK``).

A sweep runs, for each rate R of ``--rates``, one sipp with ``-r R -m min(R*duration,
--max-calls)`` (a call waiting more than 5 s for a message fails; sipp's ``-timeout`` and a
hard kill by PID bound every step), and stops after the first step that is not sustained.
``--quick`` is a smoke run: 2 rates x 3 s.

Columns
=======

=============  ===========================================================================
rate           target calls/s given to sipp (``-r``)
cps            achieved: successful calls / time from sipp's start to the last success
               (interpolated from sipp's 200 ms statistics rows); includes the duration of
               the last call, so the invite flow reads ~1-2 % low on short steps
ok / failed    successful calls; failed = calls created - successful (sipp failures plus
               calls still open when the run ended)
fail%          failed / created. A step is *sustained* when ok > 0 and fail% < 0.1
retr           sipp's retransmission counter (UDP, T1 500 ms): nonzero = loss or late answers
p50 / p99      response time of the first timed exchange (REGISTER/OPTIONS -> 200,
               INVITE -> 200) as sipp's millisecond bucket holding that quantile: "<1"
               means under 1 ms, "<5" between the previous bound and 5 ms
srvCPU         CPU-seconds (utime+stime) of the server's process tree during the caller run
CPU/1k         server CPU-seconds per 1000 successful calls (= CPU-ms per call): the figure
               to compare servers with on a shared box. An invite call is 2 transactions
               (INVITE, BYE) + ACK: 7 messages in and 7 out at the proxy
cores          srvCPU / wall time (1.0 = one core fully busy)
sippCPU        CPU-seconds of the sipp processes of the step (caller + callee)
drops s/c/u    datagrams the kernel dropped during the step because a receive buffer was
               full, on the server's port / the caller sipp's / the callee sipp's (from the
               drops column of /proc/net/udp): loss that sipp then sees as retransmissions
other          cores used by every other process on the machine during the step: well
               above 0 means something else competed for the CPUs; treat the step as noisy
=============  ===========================================================================

Then per sweep: **max sustained calls/s** (highest achieved rate among sustained steps) and the
CPU-s/1000 at that step. When the achieved rate stays under the target without failures the
limit is the load generator or the shared CPUs (look at cores / sippCPU / other).

Everything is bounded and local: targets must be loopback addresses, sipp and the servers this
script starts are stopped by their own PIDs, scratch files go to a temp dir that is removed
unless ``--keep-traces``. Python 3 standard library only.
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
SCENARIO_DIR = BENCH_DIR / "scenarios"
KAMAILIO_CFG = BENCH_DIR / "kamailio.cfg"

SCENARIOS = ("options", "invite", "register", "register_auth", "register_wb")
#: Subscribers provisioned for ``register_auth`` (user ``bNNNN``, password ``pwNNNN``).
AUTH_USERS = 1000
AUTH_DOMAIN = "127.0.0.1"
DEFAULT_RATES = (500, 1000, 2000, 4000)
QUICK_RATES = (500, 1000)
DEFAULT_DURATION = 10.0
QUICK_DURATION = 3.0
DEFAULT_MAX_CALLS = 100_000
FAIL_THRESHOLD = 0.1  # percent: a step with fewer failures is "sustained"
SATURATION = 0.8  # achieved/target below this: the limit is reached, stop the sweep
RECV_TIMEOUT_MS = 5000
UAS_GRACE = 3.0  # seconds the callee gets to finish after the caller exits
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Default ports, all on 127.0.0.1; each is checked with a test bind and moved up in steps of
# 10 when taken (the machine is shared with other test runs).
DEFAULT_LOCAL_PORT = 25060
DEFAULT_UAS_PORT = 25090
CALLER_MEDIA_PORT = 26000
UAS_MEDIA_PORT = 27000
CONTROL_PORT = 28800


# --------------------------------------------------------------------------------------------
# small helpers: ports, /proc accounting, processes
# --------------------------------------------------------------------------------------------


def parse_hostport(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected host:port, got {text!r}")
    host = host.strip("[]")
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an IP literal, got {host!r}") from None
    if not addr.is_loopback:
        raise argparse.ArgumentTypeError(f"refusing non-loopback target {host}")
    return host, int(port)


def udp_port_free(port: int, host: str = "127.0.0.1") -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def tcp_port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_udp_port(start: int, step: int = 10, tries: int = 200, avoid: set[int] | None = None,
                  width: int = 1) -> int:
    """The first port from ``start`` (in ``step``s) whose ``width`` consecutive ports are free."""
    avoid = avoid or set()
    port = start
    for _ in range(tries):
        span = range(port, port + width)
        if not avoid.intersection(span) and all(udp_port_free(p) for p in span):
            return port
        port += step
    raise RuntimeError(f"no free UDP port from {start} (step {step})")


def _read_stat(pid: int) -> tuple[int, float] | None:
    """(ppid, cpu seconds) of a process from /proc/<pid>/stat, None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    rest = data[data.rfind(b")") + 2 :].split()
    # after "pid (comm) ": state ppid ... utime(14th field) stime(15th field)
    return int(rest[1]), (int(rest[11]) + int(rest[12])) / CLK_TCK


def _start_time(pid: int) -> int | None:
    """Start time of a process (clock ticks since boot), None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    return int(data[data.rfind(b")") + 2 :].split()[19])


def all_processes() -> dict[int, tuple[int, float]]:
    """Every process on the machine: pid -> (ppid, cpu seconds)."""
    out = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = _read_stat(int(name))
            if st is not None:
                out[int(name)] = st
    return out


def tree_of(roots: list[int], procs: dict[int, tuple[int, float]]) -> set[int]:
    """``roots`` and all their descendants present in ``procs``."""
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in procs.items():
        children.setdefault(ppid, []).append(pid)
    seen: set[int] = set()
    todo = [p for p in roots if p in procs]
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        todo.extend(children.get(pid, ()))
    return seen


def cpu_snapshot(server_pids: list[int]) -> tuple[dict[int, tuple[int, float]], set[int]]:
    procs = all_processes()
    return procs, tree_of(server_pids, procs)


def udp_port_owners(port: int) -> list[int]:
    """PIDs holding a UDP socket bound to ``port`` (any address), via /proc/net/udp{,6}."""
    inodes: set[str] = set()
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(table) as fh:
                next(fh)
                for line in fh:
                    cols = line.split()
                    if int(cols[1].rsplit(":", 1)[1], 16) == port:
                        inodes.add(cols[9])
        except OSError:
            continue
    if not inodes:
        return []
    wanted = {f"socket:[{i}]" for i in inodes}
    owners = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            fds = os.listdir(f"/proc/{name}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{name}/fd/{fd}") in wanted:
                    owners.append(int(name))
                    break
            except OSError:
                continue
    # Keep only the top of each tree: descendants are counted through their ancestor.
    procs = all_processes()
    owner_set = set(owners)
    tops = []
    for pid in owners:
        ppid = procs.get(pid, (0, 0.0))[0]
        while ppid > 1 and ppid not in owner_set:
            ppid = procs.get(ppid, (0, 0.0))[0]
        if ppid <= 1:
            tops.append(pid)
    return sorted(tops)


def udp_drops() -> dict[int, int]:
    """Kernel receive-buffer drops per local UDP port (all sockets on it), /proc/net/udp{,6}."""
    out: dict[int, int] = {}
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(table) as fh:
                next(fh)
                for line in fh:
                    cols = line.split()
                    port = int(cols[1].rsplit(":", 1)[1], 16)
                    out[port] = out.get(port, 0) + int(cols[-1])
        except (OSError, ValueError, IndexError):
            continue
    return out


def wait_reap(proc: subprocess.Popen, deadline: float) -> float:
    """Wait for ``proc`` until ``deadline`` (then SIGTERM, SIGKILL by its PID); return its CPU s."""
    sent_term = None
    while True:
        try:
            pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
        except ChildProcessError:
            return 0.0
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return ru.ru_utime + ru.ru_stime
        now = time.monotonic()
        if now > deadline and sent_term is None:
            _signal(proc.pid, signal.SIGTERM)
            sent_term = now
        elif sent_term is not None and now > sent_term + 3:
            _signal(proc.pid, signal.SIGKILL)
        time.sleep(0.02)


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def probe_options(host: str, port: int, timeout: float = 1.0) -> int | None:
    """Send one OPTIONS to the server itself; return the status code or None."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        lport = s.getsockname()[1]
        h = f"[{host}]" if family == socket.AF_INET6 else host
        branch = f"z9hG4bKprobe{os.getpid()}{time.monotonic_ns()}"
        msg = (
            f"OPTIONS sip:{h}:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {h}:{lport};branch={branch};rport\r\n"
            f"Max-Forwards: 70\r\nFrom: <sip:probe@{h}:{lport}>;tag=p{lport}\r\n"
            f"To: <sip:{h}:{port}>\r\nCall-ID: probe-{branch}\r\nCSeq: 1 OPTIONS\r\n"
            f"Content-Length: 0\r\n\r\n"
        ).encode()
        s.settimeout(timeout)
        try:
            s.sendto(msg, (host, port))
            while True:
                data = s.recv(65535)
                m = re.match(rb"SIP/2\.0 (\d{3}) ", data)
                if m and int(m.group(1)) >= 200:
                    return int(m.group(1))
        except OSError:
            return None


def wait_ready(host: str, port: int, proc: subprocess.Popen | None, seconds: float = 15.0) -> int | None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return None
        code = probe_options(host, port, timeout=0.5)
        if code is not None:
            return code
        time.sleep(0.2)
    return None


# --------------------------------------------------------------------------------------------
# servers this script can start: sipline and Kamailio
# --------------------------------------------------------------------------------------------


def sipline_routes_script(uas_port: int, uas_host: str = "127.0.0.1") -> str:
    # ================================================================================
    # ADJUST HERE as the proxy / registrar APIs evolve. This returns the text of the
    # routing script (`[server] script = "routes.py"`) that the driver writes next to
    # the generated TOML for the `invite` and `register` scenarios: a registrar +
    # stateful record-routing proxy, the mirror of bench/kamailio.cfg.
    #   OPTIONS to the server itself  -> declined: the core answers 200
    #   in-dialog (To tag)            -> ctx.loose_route() + ctx.relay()   (ACK, BYE)
    #   REGISTER                      -> declined: the registrar plugin's own hook
    #                                    answers when enabled (the core says 501 otherwise)
    #   initial INVITE                -> ctx.record_route(); ctx.registrar.lookup() when
    #                                    the registrar API exists, else the static callee
    #                                    address; ctx.relay() (stateful, like t_relay)
    # Every API is looked up with getattr(): a missing one makes the script decline
    # (return None) so the core default answers, and the driver then reports
    # "0 successful calls" instead of the server answering 500 to everything.
    # ================================================================================
    return f'''"""Routing script of sipline's load benchmark (generated by bench/sipbench.py).

Registrar + stateful record-routing proxy, like bench/kamailio.cfg. Regenerated on
every run: edit sipline_routes_script() in bench/sipbench.py, not this file.
"""

UAS = "sip:uas@{uas_host}:{uas_port}"  # static route when there is no location service


def _api(ctx, name):
    return getattr(ctx, name, None)  # None when this sipline has no such API


def route_request(ctx):
    msg = ctx.msg
    method = msg.method
    relay = _api(ctx, "relay")
    if relay is None:
        return None  # no proxy core: let the core default answer

    # In-dialog requests (ACK, BYE) follow the Route set we recorded.
    if msg.to.tag:
        if ctx.loose_route():
            return relay()
        if method == "ACK":
            return ctx.drop()
        return ctx.reply(404, "Not here")

    if method != "INVITE":
        return None  # OPTIONS, REGISTER, CANCEL...: the registrar plugin / the core

    ctx.record_route()
    registrar = _api(ctx, "registrar")
    if registrar is not None and registrar.lookup():
        return relay()  # lookup() rewrote the R-URI to the registered contact
    return relay(UAS)
'''


def sipline_plugin_installed(name: str) -> bool:
    """True when a sipline plugin (entry point group ``sipline``) named ``name`` is installed."""
    from importlib.metadata import entry_points

    return any(ep.name == name for ep in entry_points(group="sipline"))


def sipline_toml(port: int, workers: int, data_dir: Path, mi_port: int, script: str | None,
                 host: str = "127.0.0.1", log_level: str = "warning",
                 plugins: list[str] | None = None) -> str:
    """The TOML the driver gives ``python -m sipline run -c``."""
    h = f"[{host}]" if ":" in host else host
    lines = [
        "# sipline load benchmark server (generated by bench/sipbench.py)",
        "[server]",
        f'listen = ["udp:{h}:{port}"]',
        f"workers = {workers}",
        f'log_level = "{log_level}"',
        f'data_dir = "{data_dir}"',
    ]
    if plugins:
        lines.append("plugins = [" + ", ".join(f'"{p}"' for p in plugins) + "]")
    # --server-option KEY=VALUE (TOML values), passed through the environment like --mi
    lines += [o for o in os.environ.get("SIPBENCH_SERVER_OPTIONS", "").split("\n") if o]
    if script:
        lines.append(f'script = "{script}"')
    if mi_port:
        lines += ["", "[mi]", f'http = "127.0.0.1:{mi_port}"', ""]
    else:  # the management interface off: no HTTP listener, no UNIX socket
        lines += ["", "[mi]", "http = false", "socket = false", ""]
    return "\n".join(lines)


@dataclass
class Server:
    """A server process this script started (stopped with SIGTERM to its PID)."""

    name: str
    label: str
    host: str
    port: int
    proc: subprocess.Popen
    workdir: Path
    log_path: Path
    ready_status: int | None = None
    #: (pid, start time) of the processes it forked, recorded once it answered
    children: list[tuple[int, int]] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc.poll() is None:
            _signal(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                _signal(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        # Workers forked by the server must not outlive it: SIGKILL any that is still there
        # (the same process: PID and start time both match).
        deadline = time.monotonic() + 5
        for pid, started in self.children:
            while _start_time(pid) == started and time.monotonic() < deadline:
                time.sleep(0.1)
            if _start_time(pid) == started:
                _signal(pid, signal.SIGKILL)

    def remember_children(self) -> None:
        procs = all_processes()
        kids = sorted(tree_of([self.pid], procs) - {self.pid})
        self.children = [(pid, st) for pid in kids if (st := _start_time(pid)) is not None]

    def log_tail(self, n: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


PROVISION_SIPLINE = """
import sys
from sqlalchemy import insert
from sipline.db import engine_for
from sipline.runner import load
from sipline_auth.cli import credentials_row
from sipline_auth.models import Subscriber
config, _ = load(__import__("pathlib").Path(sys.argv[1]))
settings = config.plugin("auth")
rows = [{"username": u, "domain": d, **credentials_row(u, d, pw, settings)}
        for u, d, pw in (line.strip().split(";") for line in open(sys.argv[2]).readlines()[1:])]
with engine_for(config).begin() as conn:
    conn.execute(insert(Subscriber), rows)
print(len(rows))
"""


def write_users(path: Path) -> Path:
    """The subscribers of ``register_auth``, one ``user;domain;password`` per line."""
    lines = ["SEQUENTIAL"] + [f"b{i:04d};{AUTH_DOMAIN};pw{i:04d}" for i in range(AUTH_USERS)]
    path.write_text("\n".join(lines) + "\n")
    return path


def sipline_extra_toml(scenario: str) -> tuple[list[str], str]:
    """Extra plugins and TOML sections of a scenario (the registrar is added by the caller)."""
    if scenario == "register_auth":
        return ["auth"], (
            '[plugins.auth]\nalgorithms = ["MD5"]  # sipp answers MD5 challenges only\n'
            'secret = "sipline-bench-secret-0123456789"\n'
        )
    if scenario == "register_wb":
        return [], '[plugins.registrar]\ndb_mode = "write-back"\nwrite_back_interval = 10.0\n'
    return [], ""


def start_sipline(port: int, workers: int, workdir: Path, *, with_script: bool, uas_port: int,
                  host: str = "127.0.0.1", scenario: str = "") -> Server:
    workdir.mkdir(parents=True, exist_ok=True)
    script = None
    if with_script:
        (workdir / "routes.py").write_text(sipline_routes_script(uas_port))
        script = "routes.py"
    mi_port = 18800
    while not tcp_port_free(mi_port):
        mi_port += 1
    if os.environ.get("SIPBENCH_MI", "on") == "off":
        mi_port = 0
    cfg = workdir / "sipline.toml"
    # The registrar (REGISTER, location lookup) when that plugin is installed.
    plugins = ["registrar"] if with_script and sipline_plugin_installed("registrar") else []
    extra_plugins, extra_toml = sipline_extra_toml(scenario)
    plugins = extra_plugins + plugins  # auth first: it challenges before the registrar saves
    cfg.write_text(sipline_toml(port, workers, workdir / "data", mi_port, script, host,
                                plugins=plugins) + extra_toml)
    log_path = workdir / "sipline.log"
    env = dict(os.environ, SIPLINE_DATA_DIR=str(workdir / "data"))
    if scenario == "register_auth":
        users = write_users(workdir / "users.csv")
        for cmd in ([sys.executable, "-m", "sipline", "db", "upgrade", "-c", str(cfg)],
                    [sys.executable, "-c", PROVISION_SIPLINE, str(cfg), str(users)]):
            done = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True,
                                  timeout=120)
            if done.returncode:
                raise RuntimeError(f"provisioning failed: {cmd[1:4]}: {done.stderr[-2000:]}")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sipline", "run", "-c", str(cfg)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            cwd=workdir, env=env, start_new_session=True,
        )
    label = f"sipline w{workers}"
    srv = Server("sipline", label, host, port, proc, workdir, log_path)
    srv.ready_status = wait_ready(host, port, proc)
    srv.remember_children()
    return srv


def kamailio_version() -> str | None:
    exe = shutil.which("kamailio")
    if not exe:
        return None
    try:
        out = subprocess.run([exe, "-v"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"version:\s*\S+ (\S+)", out)
    return m.group(1) if m else out.splitlines()[0] if out else "kamailio"


KAMAILIO_SQL = Path("/usr/share/kamailio/db_sqlite")


def kamailio_database(workdir: Path, scenario: str) -> Path:
    """A Kamailio SQLite database with the tables the scenario needs (users provisioned)."""
    import sqlite3

    path = workdir / "kamailio.sqlite"
    conn = sqlite3.connect(path)
    try:
        for name in ("standard", "auth_db" if scenario == "register_auth" else "usrloc"):
            conn.executescript((KAMAILIO_SQL / f"{name}-create.sql").read_text())
        if scenario == "register_auth":
            conn.executemany(
                "INSERT INTO subscriber (username, domain, password) VALUES (?, ?, ?)",
                [(f"b{i:04d}", AUTH_DOMAIN, f"pw{i:04d}") for i in range(AUTH_USERS)],
            )
        conn.commit()
    finally:
        conn.close()
    return path


def start_kamailio(port: int, children: int, workdir: Path, host: str = "127.0.0.1",
                   scenario: str = "") -> Server:
    workdir.mkdir(parents=True, exist_ok=True)
    h = f"[{host}]" if ":" in host else host
    log_path = workdir / "kamailio.log"
    cmd = [
        "kamailio", "-DD", "-E", "-f", str(KAMAILIO_CFG), "-l", f"udp:{h}:{port}",
        "-n", str(children), "-m", "512", "-M", "16", "-w", str(workdir), "-Y", str(workdir),
    ]
    define = {"register_auth": "WITH_AUTH", "register_wb": "WITH_WRITEBACK"}.get(scenario)
    if define:
        db = kamailio_database(workdir, scenario)
        cmd += ["-A", define, "-A", f'DBURL="sqlite:///{db}"']  # db_sqlite: 3 slashes + path
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, cwd=workdir, start_new_session=True)
    srv = Server("kamailio", f"kamailio n{children}", host, port, proc, workdir, log_path)
    srv.ready_status = wait_ready(host, port, proc)
    srv.remember_children()
    return srv


# --------------------------------------------------------------------------------------------
# sipp runs
# --------------------------------------------------------------------------------------------


def sipp_version() -> str:
    try:
        out = subprocess.run(["sipp", "-v"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    m = re.search(r"SIPp v\S+", out.stdout + out.stderr)
    return m.group(0).rstrip(".") if m else "?"


def read_stat_csv(path: Path) -> tuple[dict[str, str], list[tuple[float, int]]] | None:
    """The last row of a sipp ``-trace_stat`` file as a dict (cumulative counters), and the
    (epoch seconds, successful calls so far) of every periodic row (``-fd 200ms``)."""
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return None
    if len(lines) < 2:
        return None
    head = lines[0].rstrip(";").split(";")
    rows = [dict(zip(head, ln.rstrip(";").split(";"))) for ln in lines[1:]]
    last = rows[-1]
    last["_FirstStart"] = rows[0].get("StartTime", "")
    progress = []
    for r in rows:
        t = _epoch(r.get("CurrentTime", ""))
        if t is not None:
            progress.append((t, _int(r, "SuccessfulCall(C)")))
    return last, progress


def _end_of_successes(progress: list[tuple[float, int]], ok: int) -> float | None:
    """When the ``ok``-th call succeeded, interpolated between the periodic rows."""
    prev_t, prev_ok = None, 0
    for t, n in progress:
        if n >= ok:
            if prev_t is None or n == prev_ok:
                return t
            return prev_t + (ok - prev_ok) / (n - prev_ok) * (t - prev_t)
        prev_t, prev_ok = t, n
    return None


def _epoch(stamp: str) -> float | None:
    # "2026-11-26\t23:20:53.470862\t1795735253.470862": the last field is epoch seconds.
    try:
        return float(stamp.split()[-1])
    except (ValueError, IndexError):
        return None


def _timer_name(stat: dict[str, str]) -> str | None:
    """Name of the first response-time timer sipp reports ("1", "setup"...), in column order."""
    for key in stat:
        m = re.fullmatch(r"ResponseTime(\w+?)\(C\)", key)
        if m and not m.group(1).endswith("StDev"):
            return m.group(1)
    return None


def _repartition_p(stat: dict[str, str], timer: str, q: float) -> str | None:
    """The response-time bucket (sipp's ms buckets, e.g. "<2") holding quantile ``q``."""
    prefix = f"ResponseTimeRepartition{timer}_"
    buckets = [(k[len(prefix):], int(v)) for k, v in stat.items()
               if k.startswith(prefix) and v.strip().isdigit()]
    total = sum(n for _, n in buckets)
    if not total:
        return None
    acc = 0
    for bound, n in buckets:
        acc += n
        if acc >= q * total:
            return bound
    return buckets[-1][0]


def _int(stat: dict[str, str], key: str) -> int:
    try:
        return int(stat.get(key, "0") or 0)
    except ValueError:
        return 0


FAIL_KEYS = {
    "FailedUnexpectedMessage(C)": "unexpected message",
    "FailedTimeoutOnRecv(C)": "timeout waiting for a message",
    "FailedMaxUDPRetrans(C)": "max UDP retransmissions",
    "FailedCallRejected(C)": "call rejected",
    "FailedCannotSendMessage(C)": "cannot send",
    "FailedOutboundCongestion(C)": "outbound congestion",
    "FailedTimeoutOnSend(C)": "timeout on send",
}


def first_unexpected(error_file: Path, limit: int = 65536) -> str | None:
    """The first unexpected message sipp logged (e.g. 'SIP/2.0 404 Not Found'), if any."""
    try:
        with open(error_file, errors="replace") as fh:
            text = fh.read(limit)
    except OSError:
        return None
    m = re.search(r"received '([^\r\n']+)", text)
    if m:
        return m.group(1).strip()
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:160]
    return None


@dataclass
class Step:
    scenario: str
    rate: int
    calls: int
    created: int = 0
    ok: int = 0
    failed: int = 0
    fail_pct: float = 100.0
    retrans: int = 0
    wall_s: float = 0.0
    achieved_cps: float = 0.0
    rt_p50: str | None = None
    rt_p99: str | None = None
    srv_cpu_s: float | None = None
    srv_cpu_per_1000: float | None = None
    srv_cores: float | None = None
    srv_cpu_by_pid: dict[str, float] = field(default_factory=dict)
    sipp_cpu_s: float = 0.0
    drops: dict[str, int] = field(default_factory=dict)
    other_cores: float | None = None
    sustained: bool = False
    saturated: bool = False
    failure_reasons: dict[str, int] = field(default_factory=dict)
    first_unexpected: str | None = None
    callee_registered: bool | None = None
    sipp_rc: int | None = None
    ports: dict[str, int] = field(default_factory=dict)
    sipp_cmd: list[str] = field(default_factory=list)
    note: str = ""


class Sipp:
    """Builds and runs the sipp processes of one step."""

    def __init__(self, host: str, port: int, scratch: Path, local_port: int, uas_port: int,
                 pause_ms: int, caller_transport: str = "u1") -> None:
        self.caller_transport = caller_transport
        self.host = host
        self.port = port
        self.scratch = scratch
        self.local_port = local_port
        self.uas_port = uas_port
        self.pause_ms = pause_ms
        self.runtag = f"b{os.getpid()}x{int(time.time()) % 100000}"
        self.counter = 0

    def _common(self, ports: dict[str, int]) -> list[str]:
        return [
            "-i", self.host,
            "-mi", self.host,
            "-ci", self.host, "-cp", str(ports["control"]),
            "-mp", str(ports["media"]),
            "-nostdin", "-buff_size", str(4 << 20),
        ]

    def _ports(self, local: int, media_start: int, used: set[int]) -> dict[str, int]:
        control = free_udp_port(CONTROL_PORT, step=1, avoid=used)
        used.add(control)
        media = free_udp_port(media_start, avoid=used, width=4)
        used.update(range(media, media + 4))
        return {"local": local, "control": control, "media": media}

    def _spawn(self, cmd: list[str], tag: str) -> subprocess.Popen:
        out = open(self.scratch / f"{tag}.out", "wb")
        try:
            return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, cwd=self.scratch,
                                    start_new_session=True)
        finally:
            out.close()

    def register_callee(self, used: set[int]) -> bool:
        """One REGISTER of ``uas`` from the UAS port (uas_register.xml); True on a 200."""
        self.counter += 1
        ports = self._ports(self.uas_port, UAS_MEDIA_PORT, used)
        stf = self.scratch / f"uasreg{self.counter}.csv"
        cmd = ["sipp", f"{self.host}:{self.port}" if ":" not in self.host else
               f"[{self.host}]:{self.port}",
               "-sf", str(SCENARIO_DIR / "uas_register.xml"), "-s", "uas",
               "-p", str(self.uas_port), *self._common(ports),
               "-t", "u1", "-m", "1", "-recv_timeout", "3000", "-timeout", "8s",
               "-trace_stat", "-stf", str(stf), "-fd", "1"]
        proc = self._spawn(cmd, f"uasreg{self.counter}")
        wait_reap(proc, time.monotonic() + 12)
        got = read_stat_csv(stf)
        return bool(got) and _int(got[0], "SuccessfulCall(C)") >= 1

    def run_step(self, scenario: str, rate: int, calls: int, server_pids: list[int]) -> Step:
        self.counter += 1
        n = self.counter
        step = Step(scenario, rate, calls)
        used: set[int] = {self.port}
        # The callee's port is fixed (a static route may point at it): wait for it to free up.
        if scenario == "invite":
            used.add(self.uas_port)
            deadline = time.monotonic() + 8
            while not udp_port_free(self.uas_port) and time.monotonic() < deadline:
                time.sleep(0.2)
            if not udp_port_free(self.uas_port):
                step.note = f"UAS port {self.uas_port} is busy"
                return step
        local = free_udp_port(self.local_port, avoid=used)
        used.add(local)
        ports = self._ports(local, CALLER_MEDIA_PORT, used)
        step.ports = dict(ports)
        target = f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"
        send_time = calls / rate
        timeout = int(send_time + 13)
        stf = self.scratch / f"step{n}.csv"
        err = self.scratch / f"step{n}.errors"
        scen = {"options": "options.xml", "register": "register.xml",
                "register_wb": "register.xml", "register_auth": "register_auth.xml",
                "invite": "uac_invite.xml"}[scenario]
        cmd = ["sipp", target, "-sf", str(SCENARIO_DIR / scen), "-p", str(local),
               *self._common(ports), "-t", self.caller_transport,
               *(["-max_socket", "512"] if self.caller_transport == "un" else []),
               "-r", str(rate), "-m", str(calls), "-l", str(max(rate * 3, 100)),
               "-recv_timeout", str(RECV_TIMEOUT_MS), "-timeout", f"{timeout}s",
               "-trace_stat", "-stf", str(stf), "-fd", "200ms",
               "-trace_err", "-error_file", str(err)]
        if scenario in ("register", "register_wb"):
            cmd += ["-key", "runtag", f"{self.runtag}s{n}"]
        if scenario == "register_auth":  # one of the provisioned subscribers
            cmd += ["-s", "b0000", "-au", "b0000", "-ap", "pw0000"]
        if scenario == "invite":
            cmd += ["-s", "uas", "-d", str(self.pause_ms)]
        step.sipp_cmd = cmd

        uas = None
        if scenario == "invite":
            step.callee_registered = self.register_callee(used)
            uports = self._ports(self.uas_port, UAS_MEDIA_PORT, used)
            step.ports.update({"uas": self.uas_port, "uas_control": uports["control"],
                               "uas_media": uports["media"]})
            ucmd = ["sipp", "-sf", str(SCENARIO_DIR / "uas.xml"), "-p", str(self.uas_port),
                    *self._common(uports), "-t", "u1", "-m", str(calls),
                    "-timeout", f"{timeout + 5}s",
                    "-trace_stat", "-stf", str(self.scratch / f"uas{n}.csv"), "-fd", "5"]
            uas = self._spawn(ucmd, f"uas{n}")
            time.sleep(0.3)

        drops0 = udp_drops()
        before, tree_before = cpu_snapshot(server_pids)
        t0 = time.monotonic()
        caller = self._spawn(cmd, f"step{n}")
        sipp_cpu = wait_reap(caller, t0 + timeout + 15)
        wall = time.monotonic() - t0
        after, tree_after = cpu_snapshot(server_pids)
        drops1 = udp_drops()
        # Datagrams the kernel dropped because a socket's receive buffer was full.
        for name, dport in (("server", self.port), ("caller", local), ("callee", self.uas_port)):
            if name == "callee" and scenario != "invite":
                continue
            step.drops[name] = max(0, drops1.get(dport, 0) - drops0.get(dport, 0))
        step.sipp_rc = caller.returncode
        if uas is not None:
            sipp_cpu += wait_reap(uas, time.monotonic() + UAS_GRACE)
        step.sipp_cpu_s = round(sipp_cpu, 3)

        # Server CPU: the process tree, processes alive at both ends.
        if server_pids:
            tree = tree_before | tree_after
            per = {p: after[p][1] - before[p][1] for p in tree if p in before and p in after}
            per.update({p: after[p][1] for p in tree_after - tree_before if p in after})
            step.srv_cpu_s = round(sum(per.values()), 3)
            # Which process of the tree did the work (workers, timers...): in the JSON only.
            step.srv_cpu_by_pid = {str(p): round(c, 2) for p, c in sorted(per.items()) if c}
        else:
            tree = set()
        mine = {os.getpid(), caller.pid} | ({uas.pid} if uas is not None else set())
        other = sum(after[p][1] - before[p][1] for p in after
                    if p in before and p not in tree and p not in mine)
        step.other_cores = round(other / wall, 2) if wall > 0 else None

        got = read_stat_csv(stf)
        if got is None:
            step.note = f"sipp wrote no statistics (exit {caller.returncode}); see its output"
            step.wall_s = round(wall, 3)
            step.first_unexpected = _tail(self.scratch / f"step{n}.out")
            return step
        stat, progress = got
        step.created = _int(stat, "OutgoingCall(C)") or _int(stat, "TotalCallCreated")
        step.ok = _int(stat, "SuccessfulCall(C)")
        step.failed = max(step.created - step.ok, _int(stat, "FailedCall(C)"))
        step.retrans = _int(stat, "Retransmissions(C)")
        # Achieved rate: successes over the time from sipp's start to the last success
        # (interpolated between the 200 ms statistics rows), so a few calls that hang
        # until the receive timeout do not dilute it.
        start = _epoch(stat.get("_FirstStart", ""))
        end = _epoch(stat.get("CurrentTime", ""))
        last_ok = _end_of_successes(progress, step.ok) if step.ok else None
        span = (last_ok - start) if start and last_ok and last_ok > start else \
            ((end - start) if start and end and end > start else wall)
        step.wall_s = round((end - start) if start and end and end > start else wall, 3)
        step.achieved_cps = round(step.ok / span, 1) if span > 0 else 0.0
        step.fail_pct = round(100.0 * step.failed / step.created, 3) if step.created else 100.0
        timer = _timer_name(stat)
        if timer is not None:
            step.rt_p50 = _repartition_p(stat, timer, 0.5)
            step.rt_p99 = _repartition_p(stat, timer, 0.99)
        step.failure_reasons = {label: _int(stat, k) for k, label in FAIL_KEYS.items()
                                if _int(stat, k)}
        open_calls = step.created - step.ok - _int(stat, "FailedCall(C)")
        if open_calls > 0:
            step.failure_reasons["still open at the end"] = open_calls
        step.first_unexpected = first_unexpected(err)
        if step.srv_cpu_s is not None:
            step.srv_cores = round(step.srv_cpu_s / wall, 2) if wall > 0 else None
            if step.ok:
                step.srv_cpu_per_1000 = round(step.srv_cpu_s / step.ok * 1000, 3)
        step.sustained = step.ok > 0 and step.fail_pct < FAIL_THRESHOLD
        step.saturated = step.sustained and step.achieved_cps < SATURATION * rate
        return step


def _tail(path: Path, n: int = 3) -> str | None:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return None
    return " | ".join(lines[-n:])[:300] or None


# --------------------------------------------------------------------------------------------
# sweeps and reporting
# --------------------------------------------------------------------------------------------

HEADER = (f"{'rate':>6} {'cps':>8} {'ok':>7} {'failed':>6} {'fail%':>7} {'retr':>6} "
          f"{'p50':>5} {'p99':>5} {'srvCPU':>7} {'CPU/1k':>7} {'cores':>5} {'sippCPU':>7} "
          f"{'other':>5} {'drops s/c/u':>11}")


def _f(v: Any, fmt: str, width: int) -> str:
    return f"{v:{width}{fmt}}" if v is not None else f"{'-':>{width}}"


def format_step(s: Step) -> str:
    return (f"{s.rate:>6} {s.achieved_cps:>8.1f} {s.ok:>7} {s.failed:>6} {s.fail_pct:>7.3f} "
            f"{s.retrans:>6} {(s.rt_p50 or '-'):>5} {(s.rt_p99 or '-'):>5} "
            f"{_f(s.srv_cpu_s, '.2f', 7)} {_f(s.srv_cpu_per_1000, '.3f', 7)} "
            f"{_f(s.srv_cores, '.2f', 5)} {s.sipp_cpu_s:>7.2f} {_f(s.other_cores, '.2f', 5)} "
            f"{_drops(s.drops):>11}")


def _drops(d: dict[str, int]) -> str:
    return "/".join(str(d[k]) if k in d else "-" for k in ("server", "caller", "callee"))


@dataclass
class Sweep:
    label: str
    scenario: str
    target: str
    server_pids: list[int]
    rates: list[int]
    duration: float
    steps: list[Step] = field(default_factory=list)
    max_sustained_cps: float | None = None
    cpu_per_1000_at_max: float | None = None
    rate_at_max: int | None = None
    verdict: str = ""
    warnings: list[str] = field(default_factory=list)

    def finish(self) -> None:
        best = None
        for s in self.steps:
            if s.sustained and (best is None or s.achieved_cps > best.achieved_cps):
                best = s
        if best is not None:
            self.max_sustained_cps = best.achieved_cps
            self.cpu_per_1000_at_max = best.srv_cpu_per_1000
            self.rate_at_max = best.rate
        first = self.steps[0] if self.steps else None
        if first is None:
            self.verdict = f"{self.label}: {self.scenario}: no step ran"
        elif first.ok == 0:
            why = first.note or ", ".join(f"{k} {v}" for k, v in first.failure_reasons.items())
            extra = f"; first unexpected message: {first.first_unexpected!r}" \
                if first.first_unexpected else ""
            self.verdict = (f"{self.label}: {self.scenario} flow failed at the first step "
                            f"(rate {first.rate}): 0 successful calls of {first.created}"
                            f"{' (' + why + ')' if why else ''}{extra}")
        elif best is None:
            self.verdict = (f"{self.label}: {self.scenario}: no sustained step "
                            f"(first step {first.fail_pct:.2f} % failed)")
        else:
            self.verdict = (f"{self.label}: {self.scenario}: max sustained "
                            f"{best.achieved_cps:.0f} calls/s (target {best.rate}), "
                            f"{_f(best.srv_cpu_per_1000, '.3f', 0)} server CPU-s/1000 calls")


def run_sweep(label: str, scenario: str, host: str, port: int, server_pids: list[int],
              rates: list[int], duration: float, *, max_calls: int = DEFAULT_MAX_CALLS,
              local_port: int = DEFAULT_LOCAL_PORT, uas_port: int = DEFAULT_UAS_PORT,
              pause_ms: int = 100, keep_going: bool = False, keep_traces: bool = False,
              caller_transport: str = "u1", out=sys.stdout) -> Sweep:
    sweep = Sweep(label, scenario, f"{host}:{port}", list(server_pids), list(rates), duration)
    scratch = Path(tempfile.mkdtemp(prefix=f"sipbench-{scenario}-"))
    sipp = Sipp(host, port, scratch, local_port, uas_port, pause_ms, caller_transport)
    print(f"\n== {label}: {scenario} -> {host}:{port}, server pids {server_pids or 'unknown'}, "
          f"{duration:g} s steps, caller sipp -t {caller_transport} ==", file=out)
    if not server_pids:
        sweep.warnings.append("no server PID: CPU columns are empty")
        print("   (no server PID found or given: no CPU figures)", file=out)
    print(HEADER, file=out, flush=True)
    try:
        for rate in rates:
            calls = max(1, min(int(rate * duration), max_calls))
            step = sipp.run_step(scenario, rate, calls, server_pids)
            sweep.steps.append(step)
            print(format_step(step), file=out, flush=True)
            if scenario == "invite" and step.callee_registered is False:
                w = ("REGISTER of the callee 'uas' was not answered 200 "
                     "(fine for a server that routes 'uas' statically)")
                if w not in sweep.warnings:
                    sweep.warnings.append(w)
                    print(f"   warning: {w}", file=out)
            if step.note:
                print(f"   note: {step.note}", file=out)
            if not step.sustained:
                if step.failure_reasons:
                    print("   failures: " + ", ".join(f"{k} {v}" for k, v in
                                                      step.failure_reasons.items()), file=out)
                if step.first_unexpected:
                    print(f"   first unexpected message: {step.first_unexpected}", file=out)
            if keep_going:
                continue
            if not step.sustained:
                print("   not sustained: sweep stopped", file=out)
                break
            if step.saturated:
                print(f"   achieved < {SATURATION:.0%} of target: limit reached, sweep stopped",
                      file=out)
                break
    finally:
        if keep_traces:
            print(f"   sipp traces kept in {scratch}", file=out)
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    sweep.finish()
    print(f"-> {sweep.verdict}", file=out, flush=True)
    return sweep


def machine_info() -> dict[str, Any]:
    model = "?"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "-C", str(BENCH_DIR), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True, timeout=5).stdout.strip()
        # Uncommitted changes in the server's sources: the figures are not those of HEAD.
        dirty = subprocess.run(["git", "-C", str(BENCH_DIR.parent), "status", "--porcelain",
                                "--", "core", "plugins", "pyproject.toml"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        if commit and dirty:
            commit += "+dirty"
    except (OSError, subprocess.TimeoutExpired):
        commit = ""
    try:
        from sipline import __version__ as sipline_version  # type: ignore[import-not-found]
    except Exception:
        sipline_version = "?"
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "sipp": sipp_version(),
        "kamailio": kamailio_version(),
        "sipline": sipline_version,
        "git_commit": commit,
    }


def print_machine(info: dict[str, Any], out=sys.stdout) -> None:
    print(f"machine: {info['nproc']} CPUs, {info['cpu_model']}, kernel {info['kernel']}; "
          f"{info['date']}", file=out)
    print(f"tools: {info['sipp']}, kamailio {info['kamailio'] or 'not installed'}, "
          f"sipline {info['sipline']} ({info['git_commit'] or 'no git'}), "
          f"python {info['python']}", file=out)
    print("note: sipp runs on the same CPUs as the server: absolute rates are a lower bound; "
          "compare CPU-s/1000 calls", file=out)


def write_json(path: str, payload: dict[str, Any]) -> None:
    def conv(o: Any) -> Any:
        if isinstance(o, (Sweep, Step)):
            return asdict(o)
        raise TypeError(type(o))

    Path(path).write_text(json.dumps(payload, indent=2, default=conv))
    print(f"\nresults written to {path}")


# --------------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------------


def parse_rates(text: str) -> list[int]:
    try:
        rates = [int(r) for r in text.split(",") if r.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected rates like 500,1000, got {text!r}") from None
    if not rates or any(r <= 0 for r in rates):
        raise argparse.ArgumentTypeError("rates must be positive")
    return rates


def add_common_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rates", type=parse_rates,
                   help=f"calls/s per step (default {','.join(map(str, DEFAULT_RATES))}; "
                        f"--quick: {','.join(map(str, QUICK_RATES))})")
    p.add_argument("--duration", type=float,
                   help=f"seconds of sending per step (default {DEFAULT_DURATION:g}; "
                        f"--quick: {QUICK_DURATION:g})")
    p.add_argument("--quick", action="store_true", help="smoke run: 2 rates x 3 s")
    p.add_argument("--max-calls", type=int, default=DEFAULT_MAX_CALLS,
                   help="cap on calls per step: -m min(rate*duration, cap) (default %(default)s)")
    p.add_argument("--uas-port", type=int, default=DEFAULT_UAS_PORT,
                   help="UDP port of the callee sipp in the invite flow (default %(default)s)")
    p.add_argument("--local-port", type=int, default=DEFAULT_LOCAL_PORT,
                   help="first UDP port tried for the caller sipp (default %(default)s)")
    p.add_argument("--pause-ms", type=int, default=100,
                   help="invite flow: pause between ACK and BYE (default %(default)s)")
    p.add_argument("--caller-transport", choices=("auto", "u1", "un"), default="auto",
                   help="sipp -t of the caller: u1 = one UDP socket, un = one socket per call "
                        "(at most 512, then reused). With [server] workers > 1 (SO_REUSEPORT) "
                        "the kernel picks the worker by source address, so u1 sends everything "
                        "to one worker and un spreads the calls. auto (default): un when the "
                        "server started here has more than one worker, else u1")
    p.add_argument("--keep-going", action="store_true",
                   help="run every rate even after a step that is not sustained")
    p.add_argument("--keep-traces", action="store_true", help="keep sipp's scratch files")
    p.add_argument("--mi", choices=("on", "off"), default="on",
                   help="sipline's management interface (HTTP on loopback) on or off")
    p.add_argument("--json", metavar="FILE", help="write every figure to FILE")
    p.add_argument("--server-option", action="append", default=[], metavar="KEY=VALUE",
                   help="extra line in sipline's [server] table, e.g. overload_backlog=0 "
                        "(repeatable)")


def caller_transport(choice: str, workers: int) -> str:
    """sipp -t for the caller: 'auto' spreads the calls over several sockets for workers > 1."""
    if choice == "auto":
        return "un" if workers > 1 else "u1"
    return choice


def resolve_rates(args: argparse.Namespace) -> tuple[list[int], float]:
    rates = args.rates or list(QUICK_RATES if args.quick else DEFAULT_RATES)
    if args.quick and not args.rates:
        rates = rates[:2]
    duration = args.duration or (QUICK_DURATION if args.quick else DEFAULT_DURATION)
    return rates, duration


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--compare" in argv:
        argv.remove("--compare")
        sys.path.insert(0, str(BENCH_DIR))
        import compare  # type: ignore[import-not-found]

        return compare.main(argv)

    p = argparse.ArgumentParser(
        description="SIP load benchmark with sipp against a server on loopback "
                    "(see the module docstring for the columns).")
    p.add_argument("--target", type=parse_hostport,
                   help="host:port of the server (UDP, loopback); default 127.0.0.1:5170 "
                        "with --start")
    p.add_argument("--scenario", choices=SCENARIOS, default="options")
    p.add_argument("--server-pid", type=int, action="append",
                   help="PID of the server (its whole process tree is measured); repeatable. "
                        "Default: the owner(s) of the target UDP port")
    p.add_argument("--start", choices=("sipline", "kamailio"),
                   help="start a fresh server on the target port first, stop it at the end")
    p.add_argument("--workers", type=int, default=1,
                   help="with --start: sipline workers / Kamailio UDP children (default 1)")
    p.add_argument("--label", help="name of the server in the output")
    p.add_argument("--compare", action="store_true",
                   help="run bench/compare.py instead (sipline vs Kamailio)")
    add_common_options(p)
    args = p.parse_args(argv)
    os.environ["SIPBENCH_MI"] = args.mi  # read where the sipline TOML is written
    os.environ["SIPBENCH_SERVER_OPTIONS"] = "\n".join(args.server_option)
    rates, duration = resolve_rates(args)
    host, port = args.target or ("127.0.0.1", 5170)
    if args.target is None and not args.start:
        p.error("--target is required (or --start sipline|kamailio)")

    info = machine_info()
    print_machine(info)
    server: Server | None = None
    workroot = Path(tempfile.mkdtemp(prefix="sipbench-srv-"))
    try:
        if args.start:
            if not udp_port_free(port, host):
                print(f"error: UDP {host}:{port} is busy; pick another --target", file=sys.stderr)
                return 2
            if args.start == "kamailio":
                if not shutil.which("kamailio"):
                    print("error: kamailio is not installed", file=sys.stderr)
                    return 2
                server = start_kamailio(port, args.workers, workroot / "kamailio", host,
                                        scenario=args.scenario)
            else:
                server = start_sipline(port, args.workers, workroot / "sipline",
                                       with_script=args.scenario != "options",
                                       uas_port=args.uas_port, host=host, scenario=args.scenario)
            if server.ready_status is None:
                print(f"error: {server.label} did not answer OPTIONS on {host}:{port}; "
                      f"log tail:\n{server.log_tail()}", file=sys.stderr)
                return 2
            pids = [server.pid]
            label = args.label or server.label
        else:
            pids = args.server_pid or udp_port_owners(port)
            label = args.label or f"server@{host}:{port}"
        sweep = run_sweep(label, args.scenario, host, port, pids, rates, duration,
                          max_calls=args.max_calls, local_port=args.local_port,
                          uas_port=args.uas_port, pause_ms=args.pause_ms,
                          keep_going=args.keep_going, keep_traces=args.keep_traces,
                          caller_transport=caller_transport(args.caller_transport,
                                                            args.workers if args.start else 1))
        if args.json:
            write_json(args.json, {"machine": info, "sweeps": [sweep]})
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(workroot, ignore_errors=True)
    return 0 if sweep.max_sustained_cps else 1


if __name__ == "__main__":
    sys.exit(main())
