"""The CLI's wait for a join: a backstop behind the gossip service's own join timeout, which counts
from the node's start being done (a loaded machine may take many seconds to start four services)."""

import httpx
import pytest

from services.cli import main
from services.common.records import JoinState


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def console(clock: FakeClock, up_at: float, joined_at: float | None, failed: str = ""):
    """A console that does not answer before `up_at`, then says JOINING until `joined_at`."""

    class Reply:
        def __init__(self, state: str) -> None:
            self.state = state

        def json(self) -> dict:
            return {"join_state": self.state, "join_error": failed}

    def get(url: str, timeout: float) -> Reply:
        if clock.now < up_at:
            raise httpx.ConnectError("connection refused")
        if failed:
            return Reply(JoinState.FAILED)
        if joined_at is not None and clock.now >= joined_at:
            return Reply(JoinState.JOINED)
        return Reply(JoinState.JOINING)

    return get


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    clock = FakeClock()
    monkeypatch.setattr(main.time, "monotonic", clock.monotonic)
    monkeypatch.setattr(main.time, "sleep", clock.sleep)
    return clock


def test_a_slow_start_is_not_counted_against_the_join_timeout(clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    # The console answers 30 s after the start and the node joins 5 s later: 35 s > 8 + 10.
    monkeypatch.setattr(main.httpx, "get", console(clock, up_at=30.0, joined_at=35.0))
    assert main.wait_for_join("http://console", [], timeout=8.0) == ""
    assert 35.0 <= clock.now < 36.0


def test_a_node_that_never_joins_gives_up_after_the_timeout_from_the_first_answer(clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(main.httpx, "get", console(clock, up_at=30.0, joined_at=None))
    assert main.wait_for_join("http://console", [], timeout=8.0) == "no answer from the mesh"
    assert 30.0 + 8.0 + 10.0 <= clock.now < 30.0 + 8.0 + 10.0 + 1.0


def test_the_gossip_services_reason_is_passed_on(clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(main.httpx, "get", console(clock, up_at=1.0, joined_at=None, failed="127.0.0.2:1: wrong mesh secret"))
    assert main.wait_for_join("http://console", [], timeout=8.0) == "127.0.0.2:1: wrong mesh secret"


def test_a_console_that_never_answers_is_named(clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(main.httpx, "get", console(clock, up_at=1e9, joined_at=None))
    reason = main.wait_for_join("http://console", [], timeout=8.0, start_s=60.0)
    assert reason == "the node's console did not answer within 60 s"
    assert clock.now >= 60.0 + 8.0 + 10.0


def test_a_stop_ends_the_wait_without_a_reason(clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(main.httpx, "get", console(clock, up_at=1e9, joined_at=None))
    assert main.wait_for_join("http://console", [2], timeout=8.0) == ""
