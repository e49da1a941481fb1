"""Issue 16: a real browser (Chromium via Playwright) undoes a label, skips an item with a
reason and ranks three responses by keyboard alone."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from prefline.collect.campaigns import Selection, create_campaign
from prefline.collect.ingest import log_interaction
from prefline.collect.schemas import LogRequest
from prefline.store.collect_models import Assignment
from prefline.store.db import open_store, session_scope
from prefline.store.models import Feedback

pytestmark = pytest.mark.browser


def _ids(page: Any, selector: str) -> list[int]:
    return [int(page.get_attribute(f"{selector} >> nth={i}", "data-response-id") or 0)
            for i in range(page.locator(selector).count())]


def test_browser_undo_skip_and_keyboard_ranking(sqlite_store: Any, server: str,
                                                add_campaign: Any, alice_page: Any) -> None:
    url = sqlite_store.url
    log_interaction(open_store(url), LogRequest.model_validate(
        {"prompt": {"text": "rank me"}, "responses": [{"text": t} for t in "xyz"]}))
    pid = add_campaign(url, "pairs", "pairwise", overlap=1)
    with session_scope(url) as s:
        kid = create_campaign(s, "rank", "ranking", [], selection=Selection(k=3)).id
    page = alice_page
    page.goto(f"{server}/")  # the queue again, now with the campaigns
    page.click(f"#start-{pid}")
    page.wait_for_selector("#response-left")
    first = page.url
    left, right = _ids(page, "#response-left")[0], _ids(page, "#response-right")[0]
    page.keyboard.press("1")  # left is better
    page.keyboard.press("Control+Enter")
    page.wait_for_url(lambda u: u != first)
    page.wait_for_selector("#undo")
    second = page.url
    page.keyboard.press("u")  # undo: back to the first task, prefilled
    page.wait_for_url(first)
    page.wait_for_selector("#editing")
    assert page.is_checked("#choice-left")
    page.keyboard.press("2")  # changed my mind: right is better
    page.keyboard.press("Control+Enter")
    page.wait_for_url(second)  # on to the task that was open before the undo
    page.select_option("#skip-reason", "broken")
    page.click("#skip")
    page.wait_for_url(lambda u: u != second)
    page.goto(f"{server}/campaigns/{kid}/next")
    page.wait_for_selector("#rank-keys")
    shown = _ids(page, ".ranking .response")
    for key in ("b", "c", "a", "Backspace", "a"):  # B best, then C, then A (a retaken)
        page.keyboard.press(key)
    assert [page.input_value(f"#rank-{i}") for i in range(3)] == ["3", "1", "2"]
    ranking = page.url
    page.keyboard.press("Control+Enter")
    page.wait_for_url(lambda u: u != ranking)
    page.wait_for_load_state()
    with session_scope(url) as s:
        pairs = s.scalars(select(Feedback).where(Feedback.source == f"campaign:{pid}")
                          .order_by(Feedback.id)).all()
        old, new = pairs
        assert new.supersedes_id == old.id  # both kept, the new one replaces the old
        assert (old.response_a_id if old.choice == "a" else old.response_b_id) == left
        assert (new.response_a_id if new.choice == "a" else new.response_b_id) == right
        skipped = s.get(Assignment, int(second.rsplit("/", 1)[1]))
        assert skipped is not None and skipped.status == "skipped"
        assert skipped.skip_reason == "broken"
        ranked = s.scalar(select(Feedback).where(Feedback.source == f"campaign:{kid}"))
        assert ranked is not None
        assert ranked.payload["order"] == [shown[1], shown[2], shown[0]]
