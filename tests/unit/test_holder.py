"""Which lease holders are provably dead (taken over at once) and which count as alive."""

from __future__ import annotations

import os
import socket

import pytest

from app.sync import holder
from app.sync.holder import is_provably_dead, new_holder

HOST = socket.gethostname()


def test_a_new_holder_names_this_host_and_process() -> None:
    host, pid, nonce = new_holder().split(":")
    assert (host, int(pid)) == (HOST, os.getpid())
    assert len(nonce) == 8


def test_a_gone_pid_on_this_host_is_dead(monkeypatch: pytest.MonkeyPatch) -> None:
    def gone(pid: int, sig: int) -> None:
        raise ProcessLookupError(pid)

    monkeypatch.setattr(holder.os, "kill", gone)
    assert is_provably_dead(f"{HOST}:999999:abcd1234")


def test_a_pid_of_another_user_is_alive(monkeypatch: pytest.MonkeyPatch) -> None:
    def not_ours(pid: int, sig: int) -> None:
        raise PermissionError(pid)

    monkeypatch.setattr(holder.os, "kill", not_ours)
    assert not is_provably_dead(f"{HOST}:999999:abcd1234")


@pytest.mark.parametrize(
    "name",
    [
        "elsewhere:999999:abcd1234",  # another host: its PIDs mean nothing here
        f"{HOST}:{os.getpid()}:abcd1234",  # this very process, another pass
        f"{HOST}:0:abcd1234",  # not a process
        "worker-2",  # not a holder this code wrote
        f"{HOST}:notapid:abcd1234",
    ],
    ids=["other-host", "this-process", "pid-0", "foreign-name", "no-pid"],
)
def test_anything_uncertain_counts_as_alive(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def gone(pid: int, sig: int) -> None:
        raise ProcessLookupError(pid)

    monkeypatch.setattr(holder.os, "kill", gone)
    assert not is_provably_dead(name)
