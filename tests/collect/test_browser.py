"""A real browser (Debian's Chromium driven by Playwright) annotates through the UI."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from prefline.store.db import session_scope
from prefline.store.models import Feedback

pytestmark = pytest.mark.browser


def test_browser_annotates_pairwise_and_rating(sqlite_store: Any, server: str,
                                               add_campaign: Any, alice_page: Any) -> None:
    pid = add_campaign(sqlite_store.url, "pairs", "pairwise", overlap=1)
    rid = add_campaign(sqlite_store.url, "ratings", "rating", overlap=1,
                       criteria=("helpful", "harmless"))
    dialogs: list[str] = []
    page = alice_page
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.reload()  # watch for dialogs from here on (the queue holds no model output)
    page.click(f"#start-{pid}")
    page.wait_for_selector("#response-left")
    left = int(page.get_attribute("#response-left", "data-response-id") or 0)
    right = int(page.get_attribute("#response-right", "data-response-id") or 0)
    assert page.locator(".msg").count() == 3  # the multi-turn prompt as a chat
    page.keyboard.press("2")  # keyboard shortcut: B (right) is better
    page.keyboard.press("e")  # ... much better
    assert page.is_checked("#choice-right") and page.is_checked("#strength-strong")
    page.fill("#rationale", "right one is <b>clearer</b>")
    first_task = page.url
    page.keyboard.press("Control+Enter")
    page.wait_for_url(lambda url: url != first_task)  # on to the next pairwise item
    page.wait_for_load_state()
    page.goto(f"{server}/campaigns/{rid}/next")
    page.wait_for_selector("fieldset.likert")
    page.keyboard.press("4")
    page.keyboard.press("2")
    rating_task = page.url
    page.click("#submit")
    page.wait_for_url(lambda url: url != rating_task)
    page.wait_for_load_state()
    assert dialogs == []  # the <script>alert(...)</script> in the responses never ran
    with session_scope(sqlite_store.url) as s:
        pair = s.scalar(select(Feedback).where(Feedback.source == f"campaign:{pid}"))
        rating = s.scalar(select(Feedback).where(Feedback.source == f"campaign:{rid}"))
    assert pair is not None and rating is not None
    assert pair.shown_left_id == left
    assert (pair.response_a_id if pair.choice == "a" else pair.response_b_id) == right
    assert pair.payload["strength"] == 1.0
    assert pair.rationale == "right one is <b>clearer</b>"
    assert pair.time_spent_ms is not None and pair.time_spent_ms > 0
    assert rating.payload == {"scores": {"helpful": 4.0, "harmless": 2.0}}
