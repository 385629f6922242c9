"""SIGTERM (and SIGINT) raise in the main thread inside ``interrupts_raised``, once."""

from __future__ import annotations

import os
import signal
import time

import pytest

from app.cli.common import ExitCode
from app.cli.signals import Terminated, interrupts_raised
from app.cli.sync import exit_code
from app.core.runs import RunStatus
from app.sync.ports import Counts
from app.sync.pull import PullResult


def test_sigterm_raises_terminated_and_restores_the_handlers() -> None:
    def terminate_me() -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises at once, interrupting the sleep
        pytest.fail("SIGTERM did not interrupt")

    before = signal.getsignal(signal.SIGTERM)
    with interrupts_raised(), pytest.raises(Terminated, match="SIGTERM"):
        terminate_me()
    assert signal.getsignal(signal.SIGTERM) == before
    assert isinstance(Terminated("SIGTERM"), KeyboardInterrupt)  # the engine's cancel path


def result(status: RunStatus) -> PullResult:
    return PullResult(1, "salesforce", "Account", "pull", status, Counts(), None)


@pytest.mark.parametrize(
    ("statuses", "interrupted", "code"),
    [
        ([RunStatus.SUCCEEDED, RunStatus.SUCCEEDED], False, ExitCode.OK),
        ([], False, ExitCode.OK),
        ([RunStatus.SUCCEEDED, RunStatus.PARTIAL], False, ExitCode.PARTIAL),
        ([RunStatus.PARTIAL, RunStatus.FAILED], False, ExitCode.FAILED),
        ([RunStatus.SUCCEEDED, RunStatus.CANCELLED], False, ExitCode.FAILED),  # could not start
        ([RunStatus.SUCCEEDED], True, ExitCode.FAILED),
    ],
)
def test_the_worst_outcome_sets_the_exit_code(
    statuses: list[RunStatus], interrupted: bool, code: ExitCode
) -> None:
    assert exit_code([result(s) for s in statuses], interrupted=interrupted) is code
