"""Reaching a Dask scheduler by address: the address checked, the scheduler probed first.

``--scheduler`` is typed by a person: a malformed address, a scheduler that is down and a
program that is not a Dask scheduler must each give one line naming the address, within
seconds, before any :class:`distributed.Client` exists (a failed Client leaves tracebacks
from its finaliser, retries for 30 s, and reads a garbage answer as frame lengths of exabytes).
"""

from __future__ import annotations

import asyncio
import socket

from cellseek.errors import CellseekError

#: Seconds to wait for the scheduler's port, then for its handshake.
PROBE_TIMEOUT_S = 5.0
_EXAMPLE = "give host:port, e.g. tcp://10.0.0.5:8786"


class SchedulerError(CellseekError):
    """The Dask scheduler named by the user cannot be used."""


def check_scheduler(address: str, timeout: float = PROBE_TIMEOUT_S) -> str:
    """The address of a Dask scheduler that answered a handshake; else one-line errors.

    Raises
    ------
    SchedulerError
        The address is malformed, nothing listens there, or what answers is not a Dask
        scheduler.
    """
    from distributed.comm import connect
    from distributed.comm.addressing import parse_address, parse_host_port

    text = str(address).strip()
    try:
        scheme, location = parse_address(text)
        host, port = parse_host_port(location) if scheme in ("tcp", "tls") else (None, None)
    except (ValueError, TypeError) as err:
        raise SchedulerError(f"--scheduler {text!r} is not a Dask scheduler address ({err}); "
                             f"{_EXAMPLE}") from None
    if host is not None:
        try:
            socket.create_connection((host, int(port)), timeout=timeout).close()
        except OSError as err:
            raise SchedulerError(
                f"cannot reach the Dask scheduler at {text} ({err.strerror or err}); start it "
                "(`dask scheduler`) or check the address") from None

    async def handshake() -> None:
        comm = await connect(text, timeout=timeout)
        await comm.close()

    try:
        asyncio.run(handshake())
    except Exception as err:  # noqa: BLE001 - garbage answers raise anything (even MemoryError)
        raise SchedulerError(f"{text} answered, but not as a Dask scheduler "
                             f"({type(err).__name__}: {str(err)[:120]}); {_EXAMPLE}") from None
    return text
