"""JSON-RPC 2.0 for the management interface: commands, parameter schemas, the dispatcher.

Transport-free: :meth:`Dispatcher.handle_bytes` takes a request body and
returns the response body (or None when nothing is to be answered: a
notification, or a batch of them). Errors follow the specification exactly:
-32700 (not JSON), -32600 (not a request object), -32601 (unknown method),
-32602 (parameters that do not fit the command's schema), -32603 (the command
failed); -32000 is a command's own refusal (:class:`MIError`), such as a
routing script that does not compile.
"""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("sipline.mi")

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
SERVER_ERROR = -32000

_TYPE_NAMES: dict[type, str] = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    list: "array",
    dict: "object",
}
_ANNOTATIONS: dict[str, type] = {"str": str, "int": int, "float": float, "bool": bool,
                                 "list": list, "dict": dict}


class MIError(Exception):
    """A command's refusal, returned to the caller as a JSON-RPC error (default -32000)."""

    def __init__(self, message: str, code: int = SERVER_ERROR, data: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.data = data


@dataclass(frozen=True)
class Param:
    """One named parameter of a command; ``types`` None accepts any JSON value."""

    name: str
    types: tuple[type, ...] | None = None
    required: bool = True

    @property
    def type_name(self) -> str:
        if not self.types:
            return "any"
        return "|".join(_TYPE_NAMES.get(t, t.__name__) for t in self.types)

    def accepts(self, value: Any) -> bool:
        if self.types is None:
            return True
        if value is None:
            return not self.required
        if isinstance(value, bool):
            return bool in self.types
        if isinstance(value, int) and float in self.types:
            return True
        return isinstance(value, self.types)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type_name, "required": self.required}


@dataclass
class Command:
    """A registered MI command: ``function(**params)``, plain or async."""

    name: str
    function: Callable[..., Any]
    #: None: the command takes whatever it is given (no schema to check).
    params: tuple[Param, ...] | None = ()
    help: str = ""
    alias: str | None = None
    plugin: str = "core"

    def usage(self) -> str:
        if self.params is None:
            return "..."
        parts = [f"{p.name}:{p.type_name}" for p in self.params]
        return " ".join(part if p.required else f"[{part}]" for p, part in zip(self.params, parts))

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "alias": self.alias,
            "params": None if self.params is None else [p.describe() for p in self.params],
            "help": self.help,
            "plugin": self.plugin,
        }

    def bind(self, params: Any) -> dict[str, Any] | tuple[list[Any], dict[str, Any]]:
        """Check ``params`` (array, object or absent) against the schema.

        :returns: the keyword arguments of the call (or ``(args, kwargs)``
            for a command without a schema).
        :raises MIError: -32602, saying what is wrong and what was expected.
        """
        if self.params is None:
            if params is None:
                return [], {}
            return (list(params), {}) if isinstance(params, list) else ([], dict(params))
        schema = self.params
        expected = f"{self.name} {self.usage()}".rstrip()
        if params is None:
            given: dict[str, Any] = {}
        elif isinstance(params, list):
            if len(params) > len(schema):
                raise MIError(
                    f"{self.name} takes at most {len(schema)} parameter(s), got {len(params)} "
                    f"(usage: {expected})", INVALID_PARAMS)
            given = {p.name: v for p, v in zip(schema, params)}
        else:
            names = {p.name for p in schema}
            unknown = [k for k in params if k not in names]
            if unknown:
                raise MIError(
                    f"unknown parameter {unknown[0]!r} for {self.name} (usage: {expected})",
                    INVALID_PARAMS)
            given = dict(params)
        for p in schema:
            if p.name not in given:
                if p.required:
                    raise MIError(
                        f"missing required parameter {p.name!r} for {self.name} "
                        f"(usage: {expected})", INVALID_PARAMS)
                continue
            value = given[p.name]
            if not p.accepts(value):
                got = _json_type(value)
                if value is not None:
                    got += f" {json.dumps(value)[:60]}"
                raise MIError(
                    f"parameter {p.name!r} of {self.name} must be {p.type_name}, got {got} "
                    f"(usage: {expected})", INVALID_PARAMS)
        return given


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def _types_of(spec: Any) -> tuple[type, ...] | None:
    if spec is None or spec is Any:
        return None
    if isinstance(spec, type):
        return (spec,)
    if isinstance(spec, str):  # an annotation left as a string
        found = tuple(_ANNOTATIONS[s.strip()] for s in spec.split("|")
                      if s.strip() in _ANNOTATIONS)
        return found or None
    if isinstance(spec, Iterable):
        return tuple(t for t in spec if isinstance(t, type)) or None
    return None


def schema_for(function: Callable[..., Any], params: Any = None) -> tuple[Param, ...] | None:
    """The parameter schema of a command from its registration's ``params=``.

    ``params`` may be ``{"aor": str, "q": float}`` (name to type, or to a tuple
    of types, or None for any), a list of names, a list of :class:`Param`, or
    None to take the names and annotations from the function's signature. A
    parameter is optional when the function gives it a default.
    """
    try:
        signature: inspect.Signature | None = inspect.signature(function)
    except (TypeError, ValueError):
        signature = None
    defaults: dict[str, bool] = {}
    if signature is not None:
        for p in signature.parameters.values():
            defaults[p.name] = p.default is not inspect.Parameter.empty
    if params is None:
        if signature is None:
            return None
        out = []
        for p in signature.parameters.values():
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                return None
            annotation = None if p.annotation is inspect.Parameter.empty else p.annotation
            out.append(Param(p.name, _types_of(annotation), p.default is inspect.Parameter.empty))
        return tuple(out)
    if isinstance(params, Mapping):
        items: list[tuple[str, Any]] = list(params.items())
    else:
        items = []
        for entry in params:
            if isinstance(entry, Param):
                items.append((entry.name, entry))
            else:
                items.append((str(entry), None))
    out = []
    for name, spec in items:
        if isinstance(spec, Param):
            out.append(spec)
        else:
            out.append(Param(name, _types_of(spec), not defaults.get(name, False)))
    return tuple(out)


class CommandTable:
    """Commands by name, plus the classic aliases (``get_statistics`` = ``statistics:get``)."""

    def __init__(self) -> None:
        self.commands: dict[str, Command] = {}
        self._aliases: dict[str, str] = {}

    def add(self, command: Command) -> None:
        """:raises ValueError: a name or alias is taken, naming both owners."""
        for name in (command.name, command.alias):
            if name is None:
                continue
            owner = self.resolve(name)
            if owner is not None:
                raise ValueError(
                    f"MI command name {name!r} of {command.plugin!r} is already used by "
                    f"{owner.name} ({owner.plugin!r})"
                )
        self.commands[command.name] = command
        if command.alias:
            self._aliases[command.alias] = command.name

    def resolve(self, name: str) -> Command | None:
        command = self.commands.get(name)
        if command is None:
            target = self._aliases.get(name)
            if target is not None:
                command = self.commands[target]
        return command

    def __iter__(self) -> Iterator[Command]:
        return iter(self.commands.values())

    def __len__(self) -> int:
        return len(self.commands)


def error_response(code: int, message: str, request_id: Any = None, data: Any = None) -> dict:
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return {"jsonrpc": "2.0", "error": error, "id": request_id}


def encode(payload: Any) -> bytes:
    # Compact, one line: the UNIX socket frames responses by newline.
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False,
                      default=_fallback).encode("utf-8")


def _fallback(value: Any) -> Any:
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=str)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


_MISSING = object()


class Dispatcher:
    """Runs JSON-RPC requests against a :class:`CommandTable`."""

    def __init__(self, table: CommandTable) -> None:
        self.table = table

    async def handle_bytes(self, data: bytes) -> bytes | None:
        """One request body in, one response body out (None: nothing to send)."""
        try:
            payload = json.loads(data)
        except (UnicodeDecodeError, ValueError) as exc:
            return encode(error_response(PARSE_ERROR, f"Parse error: not valid JSON ({exc})"))
        response = await self.handle(payload)
        if response is None:
            return None
        try:
            return encode(response)
        except (TypeError, ValueError) as exc:  # a result json cannot express
            request_id = response.get("id") if isinstance(response, dict) else None
            return encode(error_response(
                INTERNAL_ERROR, f"Internal error: the result is not JSON: {exc}", request_id))

    async def handle(self, payload: Any) -> Any:
        """A decoded request or batch; returns the response object(s) or None."""
        if isinstance(payload, list):
            if not payload:
                return error_response(INVALID_REQUEST, "Invalid Request: empty batch")
            responses = []
            for item in payload:
                response = await self.call(item)
                if response is not None:
                    responses.append(response)
            return responses or None
        return await self.call(payload)

    async def call(self, request: Any) -> dict | None:
        """One request object; None for a notification (which gets no answer, ever)."""
        if not isinstance(request, dict):
            return error_response(INVALID_REQUEST,
                                  f"Invalid Request: expected an object, got {_json_type(request)}")
        request_id = request.get("id", _MISSING)
        notification = request_id is _MISSING
        if notification:
            request_id = None
        elif request_id is not None and (
            isinstance(request_id, bool) or not isinstance(request_id, (str, int, float))
        ):
            return error_response(INVALID_REQUEST,
                                  "Invalid Request: 'id' must be a string, a number or null")
        problem = None
        if request.get("jsonrpc") != "2.0":
            problem = "'jsonrpc' must be exactly \"2.0\""
        elif not isinstance(request.get("method"), str):
            problem = "'method' must be a string"
        elif "params" in request and not isinstance(request["params"], (list, dict)):
            problem = "'params' must be an array or an object"
        else:
            extra = set(request) - {"jsonrpc", "method", "params", "id"}
            if extra:
                problem = f"unexpected member {min(extra)!r}"
        if problem is not None:
            return error_response(INVALID_REQUEST, f"Invalid Request: {problem}", request_id)
        method = request["method"]
        command = self.table.resolve(method)
        if command is None:
            if notification:
                return None
            return error_response(
                METHOD_NOT_FOUND, f"Method not found: {method!r} ('which' lists the commands)",
                request_id)
        try:
            result = await self.run(command, request.get("params"))
        except MIError as exc:
            if notification:
                return None
            prefix = "Invalid params: " if exc.code == INVALID_PARAMS else ""
            return error_response(exc.code, prefix + exc.message, request_id, exc.data)
        except Exception as exc:
            log.exception("MI command %s (%s) failed", command.name, command.plugin)
            if notification:
                return None
            return error_response(
                INTERNAL_ERROR,
                f"Internal error: {command.name} failed: {type(exc).__name__}: {exc}",
                request_id)
        if notification:
            return None
        return {"jsonrpc": "2.0", "result": result, "id": request_id}

    async def run(self, command: Command, params: Any) -> Any:
        """Check the parameters, call the command, await it when it is async."""
        bound = command.bind(params)
        try:
            if isinstance(bound, tuple):
                result = command.function(*bound[0], **bound[1])
            else:
                result = command.function(**bound)
            if inspect.isawaitable(result):
                result = await result
        except ValueError as exc:
            # A value the schema could not judge (expires <= 0...): the caller's to fix.
            raise MIError(str(exc), INVALID_PARAMS) from exc
        return result


__all__ = [
    "INTERNAL_ERROR", "INVALID_PARAMS", "INVALID_REQUEST", "METHOD_NOT_FOUND", "PARSE_ERROR",
    "SERVER_ERROR", "Command", "CommandTable", "Dispatcher", "MIError", "Param",
    "encode", "error_response", "schema_for",
]
