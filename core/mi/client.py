"""``sipline mi COMMAND [ARG | name=value ...]``: the MI's command-line client.

Talks to the UNIX socket of the configuration given with ``-c`` (its
``[mi] socket``, by default ``sipline-mi.sock`` in the data dir), or to HTTP
with ``--url``. Values are typed by the command's schema (asked of the server
with ``which``), so ``ul_add alice@example.com sip:alice@10.0.0.1 3600`` sends
an integer where ``expires`` wants one. Lists of records print as tables,
name/value maps as two aligned columns; ``--json`` prints the result as JSON.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import sys
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

EXIT_OK = 0
EXIT_ERROR = 1  # the server answered with a JSON-RPC error
EXIT_USAGE = 2
EXIT_UNREACHABLE = 5  # no MI server answered (not running, wrong socket or URL)

EPILOG = (
    "exit codes: 0 ok, 1 the command failed (the server's error is printed), "
    "2 bad command line or configuration, 5 no MI server answered"
)
TOKEN_ENV = "SIPLINE_MI_TOKEN"


class Unreachable(Exception):
    """No MI server answered; the message says where we knocked."""


def add_parser(sub: Any, config_arg: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add ``sipline mi`` to the ``sipline`` command line."""
    p = sub.add_parser(
        "mi", help="run a management command on a running server (JSON-RPC)",
        description="Run one MI command (OpenSIPS names: ps, uptime, get_statistics, "
        "ul_show_contact, ...; 'which' lists them) on the server of -c FILE, through its "
        "UNIX socket, or through HTTP with --url. Arguments are positional values or "
        "name=value pairs (not both).",
        epilog=EPILOG,
    )
    config_arg(p)
    p.add_argument("--url", help="the HTTP endpoint instead of the socket, "
                   "e.g. http://127.0.0.1:8888/mi")
    p.add_argument("--socket", type=Path, metavar="PATH",
                   help="the UNIX socket (default: [mi] socket of the configuration)")
    p.add_argument("--token", help=f"bearer token for HTTP (default: ${TOKEN_ENV}, "
                   "else [mi] token of the configuration)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS",
                   help="how long to wait for the answer (default 30)")
    p.add_argument("mi_command", metavar="COMMAND", help="e.g. ps, get_statistics, which")
    p.add_argument("mi_args", metavar="ARG", nargs="*",
                   help="a value (in parameter order) or name=value")


# ------------------------------------------------------------------ transports
class _Client:
    def __init__(self) -> None:
        self._id = 0

    def call(self, method: str, params: Any = None) -> dict[str, Any]:
        self._id += 1
        request: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": self._id}
        if params is not None:
            request["params"] = params
        answer = self._exchange(json.dumps(request, separators=(",", ":")).encode())
        try:
            response = json.loads(answer)
        except ValueError:
            raise Unreachable(f"{self.where}: the answer is not JSON: {answer[:200]!r}") from None
        if not isinstance(response, dict):
            raise Unreachable(f"{self.where}: unexpected answer {response!r:.200}")
        return response

    where = ""

    def _exchange(self, data: bytes) -> bytes:
        raise NotImplementedError

    def close(self) -> None:
        pass


class SocketClient(_Client):
    """JSON-RPC lines over the MI's UNIX socket (one connection for the session)."""

    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__()
        from .unix import reachable_path

        self.where = f"unix:{path}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            with reachable_path(path) as target:
                self.sock.connect(target)
        except OSError as exc:
            self.sock.close()
            raise Unreachable(
                f"cannot reach the MI socket {path}: {exc.strerror or exc} (is `sipline run` "
                "running with this configuration? see [mi] socket, or use --url)"
            ) from None
        self._buffer = b""

    def _exchange(self, data: bytes) -> bytes:
        try:
            self.sock.sendall(data + b"\n")
            while b"\n" not in self._buffer:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise Unreachable(f"{self.where}: the server closed the connection")
                self._buffer += chunk
        except TimeoutError:
            raise Unreachable(f"{self.where}: no answer in time (--timeout)") from None
        except OSError as exc:
            raise Unreachable(f"{self.where}: {exc.strerror or exc}") from None
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line

    def close(self) -> None:
        self.sock.close()


class HttpClient(_Client):
    """JSON-RPC over HTTP (``POST /mi``), keep-alive, optional bearer token."""

    def __init__(self, url: str, token: str | None, timeout: float) -> None:
        super().__init__()
        parts = urllib.parse.urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"--url: expected http://host:port/mi, got {url!r}")
        self.where = url
        self.path = parts.path or "/mi"
        cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        self.conn = cls(parts.hostname, parts.port, timeout=timeout)
        self.headers = {"Content-Type": "application/json"}
        if token:
            self.headers["Authorization"] = f"Bearer {token}"

    def _exchange(self, data: bytes) -> bytes:
        try:
            self.conn.request("POST", self.path, body=data, headers=self.headers)
            reply = self.conn.getresponse()
            body = reply.read()
        except (OSError, http.client.HTTPException) as exc:
            raise Unreachable(f"cannot reach the MI at {self.where}: "
                              f"{getattr(exc, 'strerror', None) or exc}") from None
        if reply.status == 401:
            raise Unreachable(f"{self.where}: 401, the server wants a bearer token (--token, "
                              f"${TOKEN_ENV} or [mi] token)")
        if reply.status != 200:
            raise Unreachable(f"{self.where}: HTTP {reply.status} {reply.reason}: "
                              f"{body.decode(errors='replace').strip()[:200]}")
        return body

    def close(self) -> None:
        self.conn.close()


# ------------------------------------------------------------------ arguments
def split_args(values: list[str]) -> tuple[list[str], dict[str, str]]:
    """Positional values and ``name=value`` pairs (a name is an identifier)."""
    positional: list[str] = []
    named: dict[str, str] = {}
    for value in values:
        name, sep, rest = value.partition("=")
        if sep and name.isidentifier():
            named[name] = rest
        else:
            positional.append(value)
    return positional, named


def coerce(text: str, type_name: str) -> Any:
    """A command-line word as the JSON value a parameter of ``type_name`` wants."""
    types = set(type_name.split("|"))
    structured = "any" in types or "object" in types or "array" in types
    if structured and (text[:1] in "[{\"" or text in ("true", "false", "null")):
        try:
            return json.loads(text)
        except ValueError:
            pass
    if "integer" in types:
        try:
            return int(text)
        except ValueError:
            pass
    if "number" in types:
        try:
            return float(text)
        except ValueError:
            pass
    if "boolean" in types and text.lower() in ("true", "false", "yes", "no", "1", "0", "on", "off"):
        return text.lower() in ("true", "yes", "1", "on")
    if "any" in types:
        try:
            return json.loads(text)
        except ValueError:
            return text
    if "array" in types and "string" not in types:
        return [text]
    return text


def build_params(schema: list[dict[str, Any]] | None, positional: list[str],
                 named: dict[str, str]) -> Any:
    """JSON-RPC params from the words, typed by ``schema`` (``which``'s description)."""
    if not positional and not named:
        return None
    if schema is None:  # the command has no schema: send the words, JSON where they parse
        if named:
            return {k: coerce(v, "any") for k, v in named.items()}
        return [coerce(v, "any") for v in positional]
    types = {p["name"]: p["type"] for p in schema}
    if named:
        return {k: coerce(v, types.get(k, "string")) for k, v in named.items()}
    params: list[Any] = []
    for index, word in enumerate(positional):
        if index >= len(schema):
            params.append(word)  # too many: the server says so (-32602)
            continue
        type_name = schema[index]["type"]
        if index == len(schema) - 1 and "array" in type_name.split("|"):
            params.append([coerce(w, "string") for w in positional[index:]])
            break
        params.append(coerce(word, type_name))
    return params


# ------------------------------------------------------------------ output
def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list) and all(not isinstance(v, (dict, list)) for v in value):
        return ", ".join(_cell(v) for v in value)
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def table(rows: list[dict[str, Any]], indent: str = "") -> list[str]:
    columns: list[str] = []
    for row in rows:
        for key in row:
            if key not in columns:
                columns.append(key)
    grid = [[c.upper() for c in columns]] + [[_cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(line[i]) for line in grid) for i in range(len(columns))]
    return [indent + "  ".join(v.ljust(w) for v, w in zip(line, widths)).rstrip() for line in grid]


def _pairs(mapping: dict[str, Any], indent: str = "") -> list[str]:
    width = max((len(str(k)) for k in mapping), default=0)
    return [f"{indent}{str(k).ljust(width)}  {_cell(v)}".rstrip() for k, v in mapping.items()]


def _records(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def render(result: Any) -> list[str]:
    """Human output: tables for lists of records, aligned pairs for maps."""
    if result is None:
        return ["OK"]
    if _records(result):
        return table(result)
    if isinstance(result, list):
        if all(not isinstance(v, (dict, list)) for v in result):
            return [_cell(v) for v in result] or ["(none)"]
        return [json.dumps(result, indent=2)]
    if isinstance(result, dict):
        if not result:
            return ["(none)"]
        if len(result) == 1:
            (key, value), = result.items()
            if _records(value):
                return table(value)
        if all(_records(v) or v == [] for v in result.values()):
            lines = []
            for key, value in result.items():
                lines.append(f"{key}:")
                lines.extend(table(value, "  ") if value else ["  (none)"])
            return lines
        return _pairs(result)
    return [_cell(result)]


# ------------------------------------------------------------------ main
def _connect(args: argparse.Namespace) -> _Client:
    token = args.token or os.environ.get(TOKEN_ENV)
    if args.url:
        if token is None and args.config is not None:
            token = _load(args.config).mi.token
        return HttpClient(args.url, token, args.timeout)
    if args.socket is not None:
        return SocketClient(args.socket, args.timeout)
    from .service import socket_path

    config = _load(args.config)
    path = socket_path(config)
    if path is not None:
        return SocketClient(path, args.timeout)
    if config.mi.http:
        return HttpClient(f"http://{config.mi.http}/mi", token or config.mi.token, args.timeout)
    raise Unreachable(f"{config.source or 'the built-in configuration'}: [mi] has neither a "
                      "socket nor http")


class _ConfigProblem(Exception):
    pass


def _load(path: Path | None) -> Any:
    from sipline.config import ConfigError
    from sipline.runner import load

    try:
        config, _ = load(path)
    except ConfigError as exc:
        raise _ConfigProblem("\n".join(f"error: {p}" for p in exc.problems)) from None
    return config


def run_cli(args: argparse.Namespace) -> int:
    """``sipline mi``; returns the exit code."""
    positional, named = split_args(args.mi_args)
    if positional and named:
        print("error: give the arguments either in order or as name=value, not both",
              file=sys.stderr)
        return EXIT_USAGE
    try:
        client = _connect(args)
    except _ConfigProblem as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Unreachable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    try:
        params = None
        if positional or named:
            described = client.call("which", {"command": args.mi_command})
            schema = None
            if "result" in described and isinstance(described["result"], dict):
                schema = described["result"].get("params")
            params = build_params(schema, positional, named)
        response = client.call(args.mi_command, params)
    except Unreachable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    finally:
        client.close()
    if "error" in response:
        error = response["error"] or {}
        print(f"error: {error.get('message', error)} (JSON-RPC {error.get('code')})",
              file=sys.stderr)
        return EXIT_ERROR
    result = response.get("result")
    if args.json:
        print(json.dumps(result, indent=2, ensure_ascii=False))
    else:
        for line in render(result):
            print(line)
    return EXIT_OK


__all__ = ["EXIT_ERROR", "EXIT_OK", "EXIT_UNREACHABLE", "EXIT_USAGE", "HttpClient",
           "SocketClient", "add_parser", "build_params", "coerce", "render", "run_cli",
           "split_args"]
