"""A clock for the login throttle, so throttling tests never depend on how fast the machine runs."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from crm.db import utcnow


class Clock:
    """Stands in for ``crm.auth.services.utcnow``: still until ``advance`` moves it."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    @classmethod
    def install(cls, monkeypatch: pytest.MonkeyPatch) -> Clock:
        clock = cls()
        monkeypatch.setattr("crm.auth.services.utcnow", clock)
        return clock
