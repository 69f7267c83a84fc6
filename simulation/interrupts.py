"""Ctrl-C and engine failures during ``medgan simulate``: stop cleanly, keep every finished round.

Flower's simulation engine runs the ServerApp in a (non-daemon) thread of this process and the
virtual hospitals on Ray. Left alone, Ctrl-C does not stop a run (the engine's worker pool
waits for the federation to finish), and when the engine fails (Ray cannot start, a worker
dies) the ServerApp thread keeps the process alive for up to ``round-timeout`` waiting for
sites that will not come. Here a first Ctrl-C asks the federation to stop before its next
round (see :mod:`server.stop_request`), a second quits at once; an engine failure asks the same
and names its cause. Either way the checkpoints of finished rounds stay and ``--resume`` goes on.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from server.stop_request import request_stop, stop_reason

INTERRUPTED = "interrupted (Ctrl-C)"
SERVER_THREAD = "server_th"  # Flower names the ServerApp's thread after its target function
SERVER_THREAD_GRACE_S = 5.0  # how long the ServerApp thread gets to notice a stop request


@contextmanager
def stop_on_ctrl_c(run_dir: Path) -> Iterator[None]:
    """While the simulation runs: first Ctrl-C stops it after the current round, the second
    quits now. Only in the main thread (where Python delivers signals); elsewhere a no-op."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum: int, frame: object) -> None:
        if stop_reason() is None:
            request_stop(INTERRUPTED)
            print(f"medgan: stopping after this round; finished rounds are saved in {run_dir} "
                  "(Ctrl-C again to quit now)", file=sys.stderr, flush=True)
            return
        print(f"medgan: quitting now; finished rounds are saved (resume with --resume {run_dir})",
              file=sys.stderr, flush=True)
        exit_now(130)

    previous = signal.signal(signal.SIGINT, handle)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def root_cause(error: BaseException) -> str:
    """The innermost cause of a chained exception, as ``Type: message``."""
    while error.__cause__ is not None or (error.__context__ is not None
                                          and not error.__suppress_context__):
        error = error.__cause__ or error.__context__  # type: ignore[assignment]
    return f"{type(error).__name__}: {error}"


def lingering_threads() -> list[threading.Thread]:
    """Flower's ServerApp threads still running (non-daemon: they keep the process alive)."""
    return [t for t in threading.enumerate()
            if t.is_alive() and not t.daemon and SERVER_THREAD in t.name]


def release_process(code: int, grace_s: float = SERVER_THREAD_GRACE_S) -> int:
    """``code``, once the ServerApp thread has ended; if it does not within ``grace_s`` (it
    waits on sites that will not reply), end the process now, so that it does not hang."""
    for thread in lingering_threads():
        thread.join(timeout=grace_s)
    if lingering_threads():
        exit_now(code)
    return code


def exit_now(code: int) -> None:
    """End the process at once (checkpoints are written atomically: nothing finished is lost)."""
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        import ray

        if ray.is_initialized():
            ray.shutdown()  # the private Ray instance's processes go with us
    except Exception:  # noqa: BLE001 - best effort on the way out
        pass
    os._exit(code)


def run_forwarding_ctrl_c(args: list[str], cwd: Path) -> int:
    """Run ``args`` (a ``medgan simulate``) in its own session, passing each Ctrl-C on to it
    once: the first stops it after its round, the second quits it. The child's exit code;
    KeyboardInterrupt once it has ended, if it was interrupted."""
    process = subprocess.Popen(args, cwd=cwd, start_new_session=True)  # Ctrl-C comes via us
    interrupted = False
    while True:
        try:
            code = process.wait()
            break
        except KeyboardInterrupt:
            interrupted = True
            process.send_signal(signal.SIGINT)
    if interrupted:
        raise KeyboardInterrupt
    return code
