"""The MI's UNIX stream socket (the OpenSIPS FIFO's successor): JSON-RPC, one per line.

Framing: each request is one JSON text on one line (compact JSON never needs a
raw newline); each answer is one line too. A notification gets no line back.
The socket file is created with mode 0600 (only the server's user may manage
it); a stale file left by a crash is replaced, a live one is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .jsonrpc import INVALID_REQUEST, Dispatcher, encode, error_response
from .streams import close_clients

log = logging.getLogger("sipline.mi")

MAX_LINE = 1024 * 1024
MAX_CONNECTIONS = 64
IDLE_TIMEOUT = 300.0
#: sun_path holds 108 bytes; longer paths are reached through /proc/self/fd.
_SUN_PATH_MAX = 100


@contextlib.contextmanager
def reachable_path(path: Path) -> Iterator[str]:
    """A path ``bind``/``connect`` accept for ``path``, however long (Linux).

    Past sun_path's limit the folder is opened and named through
    ``/proc/self/fd/N``, which the kernel resolves like the real folder.
    """
    text = os.fspath(path)
    if len(os.fsencode(text)) < _SUN_PATH_MAX:
        yield text
        return
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)


def _remove_stale(path: Path) -> None:
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise OSError(errno.EEXIST, f"{path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        with reachable_path(path) as where:
            probe.connect(where)
    except (ConnectionRefusedError, FileNotFoundError):
        path.unlink(missing_ok=True)  # left behind by a process that is gone
        return
    finally:
        probe.close()
    raise OSError(errno.EADDRINUSE, f"another process serves MI on {path}")


class UnixListener:
    """JSON-RPC lines on a UNIX stream socket."""

    def __init__(self, path: Path, dispatcher: Dispatcher) -> None:
        self.path = path
        self.dispatcher = dispatcher
        self._server: asyncio.base_events.Server | None = None
        self._inode: int | None = None
        self._clients: dict[asyncio.Task[Any], asyncio.StreamWriter] = {}

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        _remove_stale(self.path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            old_umask = os.umask(0o177)  # born 0600: no window where others may connect
            try:
                with reachable_path(self.path) as where:
                    sock.bind(where)
            finally:
                os.umask(old_umask)
            os.chmod(self.path, 0o600)
            self._inode = os.stat(self.path).st_ino
            self._server = await asyncio.start_unix_server(self._serve, sock=sock,
                                                           limit=MAX_LINE + 1)
        except BaseException:
            sock.close()
            raise

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        await close_clients(self._clients)
        try:
            if self._inode is not None and os.stat(self.path).st_ino == self._inode:
                self.path.unlink()  # ours, not a file a newer server bound since
        except OSError:
            pass
        self._inode = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        try:
            if len(self._clients) >= MAX_CONNECTIONS:
                writer.write(encode(error_response(INVALID_REQUEST,
                                                    "too many MI connections")) + b"\n")
                return
            self._clients[task] = writer
            while True:
                try:
                    line = await asyncio.wait_for(reader.readuntil(b"\n"), IDLE_TIMEOUT)
                except asyncio.IncompleteReadError as exc:
                    line = exc.partial  # the last request may end at EOF without a newline
                    if not line.strip():
                        return
                except asyncio.LimitOverrunError:
                    writer.write(encode(error_response(
                        INVALID_REQUEST, f"Invalid Request: longer than {MAX_LINE} bytes "
                        "(one request per line)")) + b"\n")
                    await writer.drain()
                    return
                if not line.strip():
                    continue
                answer = await self.dispatcher.handle_bytes(line)
                if answer is not None:
                    writer.write(answer + b"\n")
                    await writer.drain()
                if not line.endswith(b"\n"):
                    return
        except (ConnectionError, asyncio.TimeoutError):
            pass
        finally:
            self._clients.pop(task, None)
            writer.close()


__all__ = ["MAX_LINE", "UnixListener", "reachable_path"]
