"""TOML configuration: loading, typed sections, and errors that name file and key.

``sipline.toml`` has four kinds of sections: ``[server]``, ``[database]``,
``[mi]`` and one ``[plugins.<name>]`` per plugin, validated by the model the
plugin declares through the ``config_model`` hook. Relative paths resolve
against the folder of the file. With no file at all, :func:`default_config`
gives a server on loopback port 5060 with SQLite under the data dir.
"""

from __future__ import annotations

import ipaddress
import os
import sys
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

TRANSPORTS = ("udp", "tcp")
DEFAULT_PORT = 5060
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


class ConfigError(Exception):
    """The configuration is invalid; the message names the file and the key."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class ListenAddress(NamedTuple):
    """One socket to listen on: ``udp:127.0.0.1:5060`` or ``tcp:[::1]:5060``."""

    transport: str
    host: str  # an IP address literal, without brackets
    port: int

    @property
    def family_is_v6(self) -> bool:
        return ":" in self.host

    def __str__(self) -> str:
        host = f"[{self.host}]" if self.family_is_v6 else self.host
        return f"{self.transport}:{host}:{self.port}"


def parse_listen(text: str) -> ListenAddress:
    """Parse ``transport:host[:port]``; the host is an IPv4 or bracketed IPv6 literal."""
    transport, sep, rest = text.partition(":")
    transport = transport.lower()
    if not sep or transport not in TRANSPORTS:
        raise ValueError(
            f"expected 'transport:host:port' with transport one of {', '.join(TRANSPORTS)}, "
            f"got {text!r}"
        )
    if rest.startswith("["):
        host, bracket, tail = rest[1:].partition("]")
        if not bracket:
            raise ValueError(f"unterminated IPv6 reference in {text!r}")
        if tail and not tail.startswith(":"):
            raise ValueError(f"expected ':port' after ']' in {text!r}")
        port_text = tail[1:]
    else:
        host, _, port_text = rest.partition(":")
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(
            f"expected an IP address literal (IPv6 in brackets) in {text!r}, got {host!r}"
        ) from None
    if isinstance(addr, ipaddress.IPv6Address) and not rest.startswith("["):
        raise ValueError(f"IPv6 addresses must be in brackets, e.g. 'udp:[::1]:5060', got {text!r}")
    port = DEFAULT_PORT
    if port_text:
        if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
            raise ValueError(f"expected a port 0..65535 in {text!r}, got {port_text!r}")
        port = int(port_text)
    return ListenAddress(transport, str(addr), port)


class Section(BaseModel):
    """Base of every TOML section model: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _listen_item(value: Any) -> Any:
    if isinstance(value, str):
        return parse_listen(value)
    if isinstance(value, ListenAddress):
        return value
    raise ValueError(f"expected a 'transport:host:port' string, got {value!r}")


Listen = Annotated[ListenAddress, BeforeValidator(_listen_item)]


class ServerConfig(Section):
    """``[server]``: listeners, local domains, pipeline, script, process model, limits."""

    listen: list[Listen] = Field(
        default_factory=lambda: [
            parse_listen("udp:127.0.0.1:5060"),
            parse_listen("tcp:127.0.0.1:5060"),
        ]
    )
    domains: list[str] = Field(default_factory=list)
    plugins: list[str] = Field(default_factory=list)
    script: Path | None = None
    workers: int = Field(default=1, ge=1, le=256)
    log_level: Literal["debug", "info", "warning", "error", "critical"] = "info"
    data_dir: Path | None = None
    server_header: str | None = None  # None: "sipline/<version>"; "" omits the header
    max_message_size: int = Field(default=65535, ge=1024, le=65535)
    tcp_idle_timeout: float = Field(default=300.0, gt=0)
    tcp_max_connections: int = Field(default=4096, ge=1)
    timer_interval: float = Field(default=1.0, gt=0)
    #: Answer every UDP request at its source port as if it carried ``rport``
    #: (OpenSIPS ``force_rport()``): what works behind NAT.
    force_rport: bool = False
    #: Load shedding: when the datagrams waiting in a UDP socket fill more
    #: than this fraction of its receive buffer, new out-of-dialog requests
    #: get 503 + Retry-After at once, while calls in progress and responses
    #: are still processed (so overload degrades instead of collapsing into
    #: retransmissions). 0 disables it.
    overload_backlog: float = Field(default=0.25, ge=0, le=1)
    #: Seconds the backlog must stay over ``overload_backlog``, and be no shorter
    #: at the end than at the start, before shedding starts: bursts that drain
    #: sooner, and a backlog that is shrinking, are not overload.
    overload_sustain: float = Field(default=0.2, ge=0, le=10)

    @field_validator("listen", mode="before")
    @classmethod
    def _listen(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [value]
        if isinstance(value, list) and not value:
            raise ValueError("expected at least one listener")
        return value

    @field_validator("domains")
    @classmethod
    def _domains(cls, value: list[str]) -> list[str]:
        out = []
        for d in value:
            d = d.strip().lower()
            if not d or any(c.isspace() for c in d) or "/" in d:
                raise ValueError(f"expected a host name or address, got {d!r}")
            out.append(d)
        return out

    @field_validator("plugins")
    @classmethod
    def _plugins(cls, value: list[str]) -> list[str]:
        seen: set[str] = set()
        for name in value:
            if name in seen:
                raise ValueError(f"plugin {name!r} is listed twice")
            seen.add(name)
        return value


class ProxyConfig(Section):
    """``[proxy]``: transaction timers (OpenSIPS ``tm``) and relay policy."""

    t1: float = Field(default=0.5, gt=0, le=10)
    t2: float = Field(default=4.0, gt=0, le=60)
    t4: float = Field(default=5.0, gt=0, le=60)
    #: Seconds to wait for any response on a branch before a local 408
    #: (OpenSIPS ``fr_timeout``); default 64*T1 (Timer B/F).
    fr_timeout: float | None = Field(default=None, gt=0)
    #: Seconds an INVITE branch may ring before it is cancelled with a local
    #: 408 (OpenSIPS ``fr_inv_timeout``; RFC 3261 Timer C).
    fr_inv_timeout: float = Field(default=120.0, gt=0)
    #: Seconds a relayed INVITE waits for the next hop's first response before
    #: sipline answers 100 (Trying) itself (RFC 3261 §17.2.1 asks for it unless
    #: a response comes within 200 ms); 0 sends it at once, like OpenSIPS's and
    #: Kamailio's tm. A retransmitted INVITE gets it at once either way.
    trying_delay: float = Field(default=0.2, ge=0, le=0.4)
    #: Relay requests for domains that are not local (an open proxy). Off:
    #: the default script answers 403 "Relay forbidden".
    open_proxy: bool = False
    #: Record-Route initial INVITE/SUBSCRIBE/REFER... in the default script.
    record_route: bool = True


class DatabaseConfig(Section):
    """``[database]``: one SQLAlchemy URL shared by every plugin."""

    url: str | None = None  # None: SQLite file in the data dir
    auto_upgrade: bool | None = None  # None: true for the embedded SQLite only


def parse_hostport(text: str) -> tuple[str, int]:
    """``127.0.0.1:8888`` or ``[::1]:8888`` (an IP literal and a port) -> (host, port)."""
    if text.startswith("["):
        host, bracket, tail = text[1:].partition("]")
        if not bracket or not tail.startswith(":"):
            raise ValueError(f"expected '[IPv6]:port', got {text!r}")
        port_text = tail[1:]
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or ":" in host:
            raise ValueError(f"expected 'address:port' (IPv6 in brackets), got {text!r}")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"expected an IP address literal in {text!r}, got {host!r}") from None
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"expected a port 0..65535 in {text!r}, got {port_text!r}")
    return host, int(port_text)


class MIConfig(Section):
    """``[mi]``: management interface listeners (docs/mi.md).

    A listener left at its default that cannot be opened (port taken) only
    logs a warning; one configured explicitly stops the server from starting.
    """

    #: ``address:port`` of POST /mi and GET /metrics; "" or false: no HTTP.
    #: Loopback by default: any other address must be written here explicitly.
    http: str | Literal[False] | None = "127.0.0.1:8888"
    #: The UNIX socket; None: sipline-mi.sock in the data dir; "" or false: none.
    socket: Path | Literal[False] | None = None
    #: Bearer token HTTP clients must send (``Authorization: Bearer <token>``).
    token: str | None = None

    @field_validator("http", mode="before")
    @classmethod
    def _http(cls, value: Any) -> Any:
        if value == "" or value is False:
            return False
        if not isinstance(value, str):
            raise ValueError(f"expected 'address:port', or false for no HTTP, got {value!r}")
        parse_hostport(value)
        return value

    @field_validator("socket", mode="before")
    @classmethod
    def _socket(cls, value: Any) -> Any:
        if value == "" or value is False:
            return False
        if not isinstance(value, (str, Path)):
            raise ValueError(f"expected a path, or false for no socket, got {value!r}")
        return value

    @field_validator("token")
    @classmethod
    def _token(cls, value: str | None) -> str | None:
        if value is not None and (not value or any(c.isspace() for c in value)):
            raise ValueError("expected a non-empty token without spaces")
        return value


class Config(BaseModel):
    """The whole validated configuration."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    server: ServerConfig = Field(default_factory=ServerConfig)
    database: DatabaseConfig = Field(default_factory=DatabaseConfig)
    mi: MIConfig = Field(default_factory=MIConfig)
    proxy: ProxyConfig = Field(default_factory=ProxyConfig)
    plugins: dict[str, Any] = Field(default_factory=dict)
    source: Path | None = None  # the file it came from, None for the built-in default

    @property
    def data_dir(self) -> Path:
        return self.server.data_dir or default_data_dir()

    @property
    def database_url(self) -> str:
        return self.database.url or f"sqlite:///{self.data_dir / 'sipline.db'}"

    def plugin(self, name: str) -> Any:
        """The validated settings of plugin ``name`` (None if it declares no model)."""
        return self.plugins.get(name)


def default_data_dir() -> Path:
    """Where the embedded SQLite database and the MI socket live by default."""
    env = os.environ.get("SIPLINE_DATA_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "share"
    return base / "sipline"


ModelLookup = Callable[[str], "type[BaseModel] | None"]


def _key_path(section: str, loc: tuple[Any, ...]) -> str:
    parts = [f"[{section}]"]
    key = ""
    for item in loc:
        if isinstance(item, int):
            key += f"[{item}]"
        else:
            key += ("." if key else " ") + str(item)
    return parts[0] + key


def _describe(err: Mapping[str, Any]) -> str:
    msg = str(err.get("msg", "invalid value"))
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if err.get("type") == "extra_forbidden":
        return "unknown key"
    if err.get("type") == "missing":
        return "required key is missing"
    got = err.get("input")
    if err.get("type") not in ("value_error",) and not isinstance(got, dict):
        return f"{msg} (got {got!r})"
    return msg


def _validate(model: type[BaseModel], data: Any, section: str, where: str) -> tuple[Any, list[str]]:
    if not isinstance(data, dict):
        return None, [f"{where}: [{section}]: expected a table, got {type(data).__name__}"]
    try:
        return model.model_validate(data), []
    except ValidationError as exc:
        problems = [
            f"{where}: {_key_path(section, tuple(e['loc']))}: {_describe(e)}" for e in exc.errors()
        ]
        return None, problems


def _resolve_paths(section: BaseModel, base: Path) -> BaseModel:
    updates = {}
    for name, value in section:
        if isinstance(value, Path) and not value.is_absolute():
            updates[name] = (base / value.expanduser()).resolve()
    return section.model_copy(update=updates) if updates else section


def build_config(
    data: Mapping[str, Any],
    *,
    source: Path | None = None,
    installed_plugins: Collection[str] | None = None,
    model_for: ModelLookup | None = None,
) -> Config:
    """Validate a parsed TOML document into a :class:`Config`.

    :param installed_plugins: names of installed plugins, so that unknown
        plugin names are reported; ``None`` skips that check.
    :param model_for: returns the config model a plugin declares (or None).
    :raises ConfigError: listing every problem, each naming file and key.
    """
    where = str(source) if source else "<built-in default>"
    base = source.parent if source else Path.cwd()
    problems: list[str] = []
    known = {"server", "database", "mi", "proxy", "plugins"}
    for key in data:
        if key not in known:
            problems.append(
                f"{where}: [{key}]: unknown section (expected one of "
                "[server], [database], [mi], [proxy], [plugins.<name>])"
            )
    sections: dict[str, Any] = {}
    for name, model in (
        ("server", ServerConfig),
        ("database", DatabaseConfig),
        ("mi", MIConfig),
        ("proxy", ProxyConfig),
    ):
        value, errs = _validate(model, data.get(name, {}), name, where)
        problems += errs
        if value is not None:
            sections[name] = _resolve_paths(value, base)

    plugin_tables = data.get("plugins", {})
    if not isinstance(plugin_tables, dict):
        problems.append(f"{where}: [plugins]: expected tables [plugins.<name>]")
        plugin_tables = {}
    if "server" in sections:
        enabled = sections["server"].plugins
    else:  # still report unknown plugin names when another [server] key was wrong
        raw = data.get("server", {})
        raw = raw.get("plugins", []) if isinstance(raw, dict) else []
        enabled = [p for p in raw if isinstance(p, str)] if isinstance(raw, list) else []
    if installed_plugins is not None:
        installed = sorted(installed_plugins)
        for name in enabled:
            if name not in installed_plugins:
                problems.append(
                    f"{where}: [server] plugins: unknown plugin {name!r} "
                    f"(installed: {', '.join(installed) or 'none'}; install it with "
                    f"'pip install sipline-{name.replace('_', '-')}')"
                )
        for name in plugin_tables:
            if name not in installed_plugins:
                problems.append(
                    f"{where}: [plugins.{name}]: unknown plugin {name!r} "
                    f"(installed: {', '.join(installed) or 'none'})"
                )
    plugin_settings: dict[str, Any] = {}
    names = list(dict.fromkeys([*enabled, *plugin_tables]))
    for name in names:
        if installed_plugins is not None and name not in installed_plugins:
            continue
        plugin_model = model_for(name) if model_for else None
        table = plugin_tables.get(name)
        if plugin_model is None:
            if table:
                problems.append(
                    f"{where}: [plugins.{name}]: plugin {name!r} takes no settings"
                )
            continue
        value, errs = _validate(plugin_model, table or {}, f"plugins.{name}", where)
        problems += errs
        if value is not None:
            plugin_settings[name] = _resolve_paths(value, base)
    if problems:
        raise ConfigError(problems)
    return Config(plugins=plugin_settings, source=source, **sections)


def load_toml(path: Path) -> dict[str, Any]:
    """Read and parse a TOML file, turning every failure into a ConfigError."""
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError([f"{path}: file not found"]) from None
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: not valid TOML: {exc}"]) from None


def load_config(
    path: Path | None,
    *,
    installed_plugins: Collection[str] | None = None,
    model_for: ModelLookup | None = None,
) -> Config:
    """Load ``path`` (or the built-in default when None) and validate it."""
    if path is None:
        return default_config(installed_plugins=installed_plugins, model_for=model_for)
    path = Path(path).resolve()
    return build_config(
        load_toml(path), source=path, installed_plugins=installed_plugins, model_for=model_for
    )


def default_config(
    *,
    installed_plugins: Collection[str] | None = None,
    model_for: ModelLookup | None = None,
) -> Config:
    """The embedded default: loopback listeners on port 5060, SQLite in the data dir."""
    return build_config({}, installed_plugins=installed_plugins, model_for=model_for)
