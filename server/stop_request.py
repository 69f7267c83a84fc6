"""A request to end a run early, at the next round boundary, with everything saved.

On Flower's simulation engine the ServerApp is a thread of the ``medgan simulate`` process:
Ctrl-C, or the engine crashing under it, must reach that thread, or the process waits on it
for up to ``round-timeout``. The simulation driver calls :func:`request_stop`; the federation
loop asks :func:`stop_reason` before each round (and while it waits for sites) and ends the run
as a budget stop does: the summary says why, the checkpoints of finished rounds stay, and
``--resume`` goes on. In a deployment the ServerApp is a process of its own and Flower stops it.
"""

from __future__ import annotations

import threading

_lock = threading.Lock()
_reason: str | None = None


def request_stop(reason: str) -> None:
    """Ask the running federation to stop before its next round; ``reason`` goes in the summary."""
    global _reason
    with _lock:
        _reason = _reason or reason


def stop_reason() -> str | None:
    """Why a stop was requested, or None."""
    with _lock:
        return _reason


def clear_stop() -> None:
    """Forget a request (a new run starts)."""
    global _reason
    with _lock:
        _reason = None
