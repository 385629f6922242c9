"""Who holds a lease: this process's name for itself, and whether another holder is provably dead.

A holder is ``<host>:<pid>:<nonce>``. The nonce tells two passes of one process apart. A lease
whose holder ran on this host under a PID that no longer exists can be taken over at once: its
process was killed (``kill -9``, OOM) and will never renew or release it. Anything less certain
(another host, a PID that exists, a name we cannot parse) counts as alive, and such a lease is
only taken over when it expires.

Assumes hostnames are unique among the processes that share a database (each container gets its
own by default); a PID reused by an unrelated process only delays the takeover to the expiry.
"""

from __future__ import annotations

import os
import socket
import sys
import uuid


def new_holder() -> str:
    """A fresh holder name for a pass run by this process."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _host_and_pid(holder: str) -> tuple[str, int] | None:
    host, sep, rest = holder.partition(":")
    pid_text, sep2, _nonce = rest.partition(":")
    if not (sep and sep2 and pid_text.isdigit()):
        return None
    return host, int(pid_text)


def pid_exists(pid: int) -> bool:
    """Whether a process with this PID exists on this host (signal 0 checks without sending)."""
    if pid <= 0:
        return True  # 0 and negatives name process groups, not a process: never "dead"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, it is just another user's
    return True


def is_provably_dead(holder: str) -> bool:
    """True only for a holder on this host whose PID no longer exists."""
    if sys.platform == "win32":  # os.kill(pid, 0) would terminate the process there
        return False
    parsed = _host_and_pid(holder)
    if parsed is None:
        return False
    host, pid = parsed
    if host != socket.gethostname() or pid == os.getpid():
        return False
    return not pid_exists(pid)
