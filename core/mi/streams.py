"""What the MI's stream listeners (HTTP and UNIX socket) share."""

from __future__ import annotations

import asyncio
from typing import Any


async def close_clients(clients: dict[Any, Any]) -> None:
    """End a listener's connections: close each one (its handler sees EOF and returns),
    then cancel what still runs a second later (a command that does not finish)."""
    for writer in list(clients.values()):
        writer.close()
    tasks = list(clients)
    if not tasks:
        return
    _, pending = await asyncio.wait(tasks, timeout=1.0)
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)
