"""Job handlers for the jobs' own tests (registered in ``crm.jobs.services.KINDS`` by the tests)."""

from __future__ import annotations

from typing import Any

from crm.jobs.services import JobFailed, JobRun

# How many attempts of a "test.flaky" job raise before one succeeds (set by each test).
FAILURES: dict[str, int] = {"left": 0}
SEEN: list[int] = []


def flaky(run: JobRun) -> dict[str, Any]:
    SEEN.append(run.attempt)
    run.progress(1, 2)
    if FAILURES["left"] > 0:
        FAILURES["left"] -= 1
        raise ConnectionError("the relay did not answer")
    run.progress(2)
    return {"attempt": run.attempt}


def refused(run: JobRun) -> dict[str, Any]:
    raise JobFailed("Nothing to do: the source file was deleted.")


def register(monkeypatch: Any) -> None:
    from crm.jobs import services

    monkeypatch.setitem(services.KINDS, "test.flaky", ("tests.jobs_support:flaky", "Test job"))
    monkeypatch.setitem(services.KINDS, "test.refused", ("tests.jobs_support:refused", "Refused test job"))
    SEEN.clear()
