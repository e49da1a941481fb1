"""Issue 16, annotator UX: undo/edit (a superseding label, both kept), skip with a reason,
"Continue" mid-queue, rating anchors, "My labels" as seen, safe instruction links, readable
admin pages. Each reproduction from the issue is a test here."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from tests.cli_runner import run_cli

from prefline.audit.load import load_audit_data
from prefline.base.errors import PreflineError
from prefline.collect import create_app
from prefline.collect.campaigns import Selection, anchors, create_campaign
from prefline.store.collect_models import Assignment, Campaign, CampaignItem
from prefline.store.db import open_store, session_scope
from prefline.store.models import Feedback
from prefline.store.snapshots import create_snapshot


def _task(client: TestClient, cid: int) -> str:
    resp = client.get(f"/campaigns/{cid}/next", follow_redirects=False)
    assert resp.status_code == 303, resp.text
    return str(resp.headers["location"])


def _sides(page: str) -> tuple[int, int]:
    found = re.findall(r'id="response-(?:left|right)" data-response-id="(\d+)"', page)
    return int(found[0]), int(found[1])


def test_undo_edit_supersedes_and_only_the_newest_votes(store: Any, add_campaign: Any,
                                                        login: Any) -> None:
    """Reproduction: re-posting a label silently kept the first; there was no undo."""
    cid = add_campaign(store.url, "edit", "pairwise", overlap=1)
    app = create_app(store.url)
    with TestClient(app) as alice, TestClient(app) as bob:
        csrf = login(alice, "alice")
        task = _task(alice, cid)
        left, right = _sides(alice.get(task).text)
        alice.post(task, data={"csrf_token": csrf, "choice": "left", "strength": "clear"})
        page = alice.get(f"/campaigns/{cid}/next").text  # the next task offers "Undo"
        old_id = int(re.search(r'action="/labels/(\d+)/edit" class="inline" id="undo-form"',
                               page).group(1))  # type: ignore[union-attr]
        bob_csrf = login(bob, "bob")  # nobody else can reopen alice's label
        assert bob.post(f"/labels/{old_id}/edit", data={"csrf_token": bob_csrf}).status_code == 404
        assert alice.post(f"/labels/{old_id}/edit", data={}).status_code == 403  # CSRF
        reopened = alice.post(f"/labels/{old_id}/edit", data={"csrf_token": csrf},
                              follow_redirects=False)
        assert reopened.headers["location"] == task
        form = alice.get(task).text
        assert 'id="editing"' in form and f"label #{old_id}" in form
        assert re.search(r'id="choice-left" checked', form)  # prefilled with the old answer
        assert re.search(r'id="strength-clear" checked', form)
        for _ in range(2):  # a double click stores one edit
            alice.post(task, data={"csrf_token": csrf, "choice": "right", "rationale": "oops"})
        mine = alice.get("/labels").text
    with session_scope(store.url) as s:
        rows = s.scalars(select(Feedback).where(Feedback.source == f"campaign:{cid}")
                         .order_by(Feedback.id)).all()
        old = next(fb for fb in rows if fb.id == old_id)
        new = next(fb for fb in rows if fb.supersedes_id == old_id)
        assert len([fb for fb in rows if fb.id in (old_id, new.id)]) == 2  # both kept
        assert (new.response_a_id if new.choice == "a" else new.response_b_id) == right
        assert (old.response_a_id if old.choice == "a" else old.response_b_id) == left
        assert new.rationale == "oops" and new.time_spent_ms is not None
        assignment = s.scalar(select(Assignment).where(Assignment.feedback_id == new.id))
        assert assignment is not None and assignment.status == "done"
        item = s.get(CampaignItem, assignment.item_id)
        assert item is not None and item.done_count == 1  # an edit is not a second vote
    assert f"replaced by #{new.id}" in mine and f"(replaces #{old_id})" in mine
    snap = create_snapshot(store.url, "edited", filters=None, test_fraction=0.0)
    assert snap.stats["feedback"] == 1
    with open_store(store.url).connect() as conn:
        audited = load_audit_data(conn)
    assert set(int(i) for i in audited.feedback_id) == {new.id}  # the audit reads the edit


def test_skip_needs_a_reason_and_hands_the_item_to_others(store: Any, add_campaign: Any,
                                                          login: Any) -> None:
    """Reproduction: there was no way to skip an item."""
    cid = add_campaign(store.url, "skip", "pairwise", overlap=1)
    app = create_app(store.url)
    with TestClient(app) as alice, TestClient(app) as bob:
        csrf = login(alice, "alice")
        task = _task(alice, cid)
        assert 'id="skip-form"' in alice.get(task).text
        for bad in ({}, {"reason": "bored"}, {"reason": "other", "note": "  "}):
            resp = alice.post(f"{task}/skip", data={"csrf_token": csrf, **bad})
            assert resp.status_code == 400, bad
        ok = alice.post(f"{task}/skip", data={"csrf_token": csrf, "reason": "other",
                                              "note": "I wrote\nthis prompt"},
                        follow_redirects=False)
        assert ok.status_code == 303
        assert _task(alice, cid) != task  # not handed back to alice
        assert "0 / 3" in alice.get("/").text  # 4 items, one skipped: 3 left for alice
        # a stale tab cannot label the skipped item
        alice.post(task, data={"csrf_token": csrf, "choice": "left"})
        login(bob, "bob")
        _task(bob, cid)  # bob gets the lowest open item: the one alice skipped
    with session_scope(store.url) as s:
        skipped = s.get(Assignment, int(task.rsplit("/", 1)[1]))
        assert skipped is not None and skipped.status == "skipped"
        assert skipped.skip_reason == "other: I wrote this prompt"
        assert skipped.feedback_id is None
        taken_by_bob = s.scalars(select(Assignment.item_id).where(
            Assignment.user_id != skipped.user_id)).all()
        assert skipped.item_id in taken_by_bob  # still open for the others
        assert s.scalar(select(Feedback).where(Feedback.source == f"campaign:{cid}")) is None


def test_queue_says_continue_once_started(store: Any, add_campaign: Any,
                                          login: Any) -> None:
    """Reproduction: "Start" was shown mid-queue."""
    cid = add_campaign(store.url, "cont", "pairwise", overlap=1)
    with TestClient(create_app(store.url)) as c:
        csrf = login(c, "alice")
        assert f'id="start-{cid}" href="/campaigns/{cid}/next">Start<' in c.get("/").text
        c.post(_task(c, cid), data={"csrf_token": csrf, "choice": "tie"})
        assert f'id="start-{cid}" href="/campaigns/{cid}/next">Continue<' in c.get("/").text


def test_rating_scale_shows_the_rubric_anchors(store: Any, login: Any) -> None:
    """Reproduction: rating scales had no anchors."""
    with session_scope(store.url) as s:
        cid = create_campaign(s, "rubric", "rating", ["helpful", "safe"], rubric={
            "helpful": {1: "ignores the question", 5: "answers it fully"}}).id
        with pytest.raises(PreflineError, match="not a criterion"):
            create_campaign(s, "bad", "rating", ["helpful"], rubric={"tone": {1: "x"}})
        with pytest.raises(PreflineError, match="scores 1-5"):
            create_campaign(s, "bad", "rating", ["helpful"], rubric={"helpful": {7: "x"}})
    with TestClient(create_app(store.url)) as c:
        login(c, "alice")
        page = c.get(_task(c, cid)).text
    assert re.search(r'id="anchor-0-1">ignores the question<', page)
    assert re.search(r'id="anchor-0-5">answers it fully<', page)
    assert re.search(r'id="anchor-1-1">very poor<', page)  # no rubric: a plain default
    assert 'id="anchor-0-3"' not in page


def test_campaign_create_takes_a_rubric_file(store: Any, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "rubric.toml"
    good.write_text('helpful = {1 = "ignores the question", 5 = "answers it fully"}\n')
    code, out, err = run_cli(["campaign", "create", "r", "--kind", "rating", "--criteria",
                              "helpful", "--rubric", str(good), "--db", store.url,
                              "--json"], capsys)
    assert code == 0, err
    with session_scope(store.url) as s:
        campaign = s.scalar(select(Campaign).where(Campaign.name == "r"))
        assert campaign is not None
        assert anchors(campaign) == [{"1": "ignores the question", "5": "answers it fully"}]
    bad = tmp_path / "rubric.json"
    for text in ("{not json", '{"helpful": "good"}'):
        bad.write_text(text)
        code, out, err = run_cli(["campaign", "create", "r2", "--kind", "rating",
                                  "--criteria", "helpful", "--rubric", str(bad),
                                  "--db", store.url], capsys)
        assert code != 0 and "rubric" in err and "Traceback" not in err + out


def test_my_labels_show_left_right_and_shown_order(seed_store: Any, db_url: str,
                                                   add_campaign: Any, login: Any) -> None:
    """Reproduction: "My labels" showed the internal a/b order, not what was seen."""
    store = seed_store(db_url, n_prompts=1)
    from prefline.collect.ingest import log_interaction
    from prefline.collect.schemas import LogRequest

    log_interaction(open_store(db_url), LogRequest.model_validate(
        {"prompt": {"text": "rank me"}, "responses": [{"text": t} for t in "xyz"]}))
    pid = add_campaign(db_url, "pairs", "pairwise", overlap=1)
    with session_scope(db_url) as s:
        kid = create_campaign(s, "rank", "ranking", [], selection=Selection(k=3)).id
    with TestClient(create_app(store.url)) as c:
        csrf = login(c, "alice")
        task = _task(c, pid)
        left, right = _sides(c.get(task).text)
        c.post(task, data={"csrf_token": csrf, "choice": "right", "strength": "slight"})
        rank_task = _task(c, kid)
        shown = [int(x) for x in re.findall(r'data-response-id="(\d+)"', c.get(rank_task).text)]
        ranks = {shown[0]: 3, shown[1]: 1, shown[2]: 2}  # B > C > A
        c.post(rank_task, data={"csrf_token": csrf,
                                **{f"rank_{r}": str(k) for r, k in ranks.items()}})
        page = c.get("/labels").text
    assert f"left #{left}, right #{right}: right better than left, slight" in page
    assert (f"shown A #{shown[0]}, B #{shown[1]}, C #{shown[2]}; ranked B &gt; C &gt; A"
            in page)


def test_instruction_links_are_clickable_and_safe(store: Any, login: Any) -> None:
    """Reproduction: links in instructions were never clickable."""
    text = ("Read [the guide](https://example.org/guide?a=1&b=2) or https://example.org/faq.\n"
            "Never [this](javascript:alert(1)) nor <a href='javascript:alert(2)'>that</a>.")
    with session_scope(store.url) as s:
        cid = create_campaign(s, "links", "pairwise", [], instructions=text).id
    with TestClient(create_app(store.url)) as c:
        login(c, "alice")
        page = c.get(_task(c, cid)).text
    instructions = page.split('class="instructions">')[1].split("</div>")[0]
    links = re.findall(r"<a ([^>]*)>", instructions)
    assert links == [
        'href="https://example.org/guide?a=1&amp;b=2" target="_blank" rel="noopener noreferrer"',
        'href="https://example.org/faq" target="_blank" rel="noopener noreferrer"']
    assert "javascript:alert(1)" in instructions and "&lt;a href=" in instructions
    body = page.split('id="prompt"')[1]  # model output keeps links as text
    assert "<a " not in body.split('class="taskfoot"')[0]


def test_admin_campaign_page_is_readable(store: Any, add_campaign: Any,
                                         login: Any) -> None:
    """Reproduction: the admin campaign page showed raw JSON and Python True/False."""
    cid = add_campaign(store.url, "adm", "pairwise", overlap=1)
    app = create_app(store.url)
    with TestClient(app) as alice:
        csrf = login(alice, "alice")
        for _ in range(2):
            alice.post(_task(alice, cid), data={"csrf_token": csrf, "choice": "tie"})
    with TestClient(app) as root:
        login(root, "root")
        page = root.get(f"/admin/campaigns/{cid}").text
        overview = root.get("/admin").text
    latest = page.split('id="latest"')[1]
    assert "Write code 0" in latest and "Question 1?" in latest  # prompt text, not ids
    assert ": tie" in latest and "{&#34;" not in latest and '{"choice"' not in latest
    assert "blind: yes" in page
    assert "True" not in overview and "False" not in overview
    assert "<td>yes</td>" in overview and "<td>no</td>" in overview
