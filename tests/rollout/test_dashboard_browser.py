"""The rollout dashboard in a real browser (Debian's Chromium driven by Playwright, the
``chromium`` fixture of tests/collect): an admin sees the arms with their metrics,
intervals and plot, and rolls the canary back."""

from __future__ import annotations

from typing import Any

import pytest
from tests.collect.conftest import PASSWORD, chromium  # noqa: F401  (the browser fixture)
from tests.rollout.conftest import Registry, start_canary
from tests.rollout.simulate import Population, uvicorn_thread

from prefline.collect import create_app
from prefline.store.db import session_scope
from prefline.store.models import Artifact

pytestmark = pytest.mark.browser


def test_admin_rolls_back_the_canary_from_the_dashboard(registry: Registry,
                                                        chromium: Any) -> None:  # noqa: F811
    canary = start_canary(registry, percent=50.0, guardrails={"auto_rollback": False},
                          users=True)
    users = Population(p_up={"production": 0.7, "candidate": 0.4})
    with uvicorn_thread(create_app(registry.url)) as base:
        users.run(base, canary.key, 30, stop=lambda i: False)
        page = chromium.new_page()
        page.goto(f"{base}/login")
        page.fill("#username", "root")
        page.fill("#password", PASSWORD)
        page.click("#login")
        page.wait_for_url(f"{base}/")
        page.goto(f"{base}/admin/rollout")
        cand_row = page.locator("#arm-chat-candidate")
        assert f"#{canary.cand}" in cand_row.inner_text()
        assert "canary" in cand_row.inner_text() and "50%" in cand_row.inner_text()
        assert "n=" in page.locator("#arm-chat-production .thumbs").inner_text()
        assert page.locator("svg.plot polyline").count() == 2
        page.fill(f"#reason-{canary.cand}", "looks off in the dashboard")
        page.click(f"#rollback-{canary.cand}")
        page.wait_for_url(f"{base}/admin/rollout")
        assert "–" in page.locator("#arm-chat-candidate").inner_text()
        trail = page.locator("#trail").inner_text()
        assert "admin:root" in trail and "looks off in the dashboard" in trail
    with session_scope(registry.url) as s:
        assert s.get(Artifact, canary.cand).status == "rolled_back"  # type: ignore[union-attr]
        assert s.get(Artifact, canary.prod).status == "production"  # type: ignore[union-attr]
