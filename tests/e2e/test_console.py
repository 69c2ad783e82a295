"""The console in a real headless Chromium: the mesh at a glance, live updates, the chat panel."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from services.gossip.settings import TEST
from tests.conftest import SMOLLM2

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is installed by `make test`")]
# As the probe of this machine found: without the background-networking flags, Chromium keeps
# dialling Google's hosts, which a closed network refuses.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def browser(tmp_path: Path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def test_console_shows_the_mesh_streams_a_chat_and_drops_a_killed_node_live(mesh_bed, browser, tmp_path: Path) -> None:
    a = mesh_bed.start("A", "--model", SMOLLM2)
    b = mesh_bed.start("B", "--standby", join=a)
    a.wait_ready(SMOLLM2)
    mesh_bed.wait_until(lambda: mesh_bed.all_see_each_other(["A", "B"]), 30, "A and B in one mesh")
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(a.console_url)
    page.wait_for_selector("#link.ready", timeout=10_000)
    # Both nodes, their roles, and the model served by A.
    page.wait_for_selector('#nodes [data-node="A"]', timeout=10_000)
    page.wait_for_selector('#nodes [data-node="B"]', timeout=10_000)
    assert "serving" in page.inner_text('#nodes [data-node="A"]') and "standby" in page.inner_text('#nodes [data-node="B"]')
    page.wait_for_selector(f'#models tr[data-model="{SMOLLM2}"] .badge.ready', timeout=10_000)
    assert "A: ready" in page.inner_text(f'#models tr[data-model="{SMOLLM2}"]')
    assert page.locator("#topology circle").count() == 2
    # A chat typed in the page streams an answer from the mesh.
    page.wait_for_function(f"document.getElementById('chat-model').value === '{SMOLLM2}'", timeout=10_000)
    page.fill("#chat-input", "Name a colour.")
    page.click("#chat-form button")
    page.wait_for_selector(".answer[data-done='1']", timeout=60_000)
    answer = page.inner_text(".answer")
    assert answer.strip() and page.locator(".answer .err").count() == 0, answer
    shot = tmp_path / "console.png"
    page.screenshot(path=str(shot), full_page=True)
    print(f"screenshot: {shot}")
    assert shot.stat().st_size > 10_000
    # Kill B: its card leaves the open page, without a reload, within the profile's bound.
    killed = time.monotonic()
    b.kill()
    page.wait_for_selector('#nodes [data-node="B"]', state="detached", timeout=int((TEST.dead_within + 5) * 1000))
    took = time.monotonic() - killed
    print(f"killed node left the page after {took:.1f}s (bound {TEST.dead_within}s)")
    assert took <= TEST.dead_within
    assert page.locator("#topology circle").count() == 1
