"""The annotation UI through HTTP: assignment, storing labels, safe rendering, admin pages."""

from __future__ import annotations

import json
import re
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from prefline.collect import create_app
from prefline.collect.render import render_markdown
from prefline.store.collect_models import Assignment
from prefline.store.db import session_scope
from prefline.store.models import Feedback


def _next(client: TestClient, campaign: int) -> int | None:
    resp = client.get(f"/campaigns/{campaign}/next", follow_redirects=False)
    if resp.status_code == 200:
        assert "Nothing left" in resp.text
        return None
    assert resp.status_code == 303
    return int(resp.headers["location"].rsplit("/", 1)[1])


def test_overlap_n_assignment_and_pairwise_storage(store: Any, add_campaign: Any,
                                                   login: Any) -> None:
    cid = add_campaign(store.url, "pairs", "pairwise", overlap=2)
    app = create_app(store.url)
    seen: dict[str, list[int]] = {}
    for user in ("alice", "bob", "root"):
        with TestClient(app) as c:
            csrf = login(c, user)
            seen[user] = []
            while (aid := _next(c, cid)) is not None:
                page = c.get(f"/tasks/{aid}")
                assert page.status_code == 200
                left = int(re.search(r'id="response-left" data-response-id="(\d+)"',
                                     page.text).group(1))  # type: ignore[union-attr]
                r = c.post(f"/tasks/{aid}", data={"csrf_token": csrf, "choice": "left",
                                                  "strength": "clear", "rationale": "r"},
                           follow_redirects=False)
                assert r.status_code == 303, r.text
                seen[user].append(left)
    # 4 items x overlap 2: alice and bob each do all 4, the admin gets nothing more
    assert (len(seen["alice"]), len(seen["bob"]), len(seen["root"])) == (4, 4, 0)
    with session_scope(store.url) as s:
        rows = s.scalars(select(Feedback).where(Feedback.source == f"campaign:{cid}")
                         .order_by(Feedback.id)).all()
        assert len(rows) == 8
        for fb in rows:
            # "left" was chosen, so the stored choice points at whichever response was left
            picked = fb.response_a_id if fb.choice == "a" else fb.response_b_id
            assert picked == fb.shown_left_id
            assert fb.payload == {"choice": fb.choice, "strength": 0.67}
            assert fb.response_a_id < fb.response_b_id  # type: ignore[operator]
            assert fb.time_spent_ms is not None
        pairs = {(a.user_id, a.item_id) for a in s.scalars(select(Assignment))}
        assert len(pairs) == 8  # nobody labelled an item twice


def test_rating_campaign_stores_all_criteria(sqlite_store: Any, add_campaign: Any, login: Any) -> None:
    rid = add_campaign(sqlite_store.url, "rate", "rating", overlap=1, criteria=("helpful", "safe"))
    with TestClient(create_app(sqlite_store.url)) as c:
        csrf = login(c, "alice")
        aid = _next(c, rid)
        bad = c.post(f"/tasks/{aid}", data={"csrf_token": csrf, "score_0": "4"})
        assert bad.status_code == 400 and "safe" in bad.text
        ok = c.post(f"/tasks/{aid}", data={"csrf_token": csrf, "score_0": "4", "score_1": "2"},
                    follow_redirects=False)
        assert ok.status_code == 303
    with session_scope(sqlite_store.url) as s:
        fb = s.scalar(select(Feedback).where(Feedback.source == f"campaign:{rid}"))
        assert fb is not None and fb.kind == "rating"
        assert fb.payload == {"scores": {"helpful": 4.0, "safe": 2.0}}


def test_ranking_stores_best_first(seed_store: Any, sqlite_url: str, add_campaign: Any,
                                   login: Any) -> None:
    store = seed_store(sqlite_url, n_prompts=1)
    from prefline.collect.ingest import log_interaction
    from prefline.collect.schemas import LogRequest
    from prefline.store.db import open_store

    _, rids = log_interaction(open_store(sqlite_url), LogRequest.model_validate(
        {"prompt": {"text": "rank me"}, "responses": [{"text": t} for t in "xyz"]}))
    from prefline.collect.campaigns import Selection, create_campaign

    with session_scope(sqlite_url) as s:
        kid = create_campaign(s, "rank", "ranking", [], selection=Selection(k=3)).id
    with TestClient(create_app(store.url)) as c:
        csrf = login(c, "bob")
        aid = _next(c, kid)
        page = c.get(f"/tasks/{aid}").text
        shown = [int(x) for x in re.findall(r'data-response-id="(\d+)"', page)]
        assert sorted(shown) == sorted(rids)
        form = {"csrf_token": csrf, **{f"rank_{r}": str(3 - i) for i, r in enumerate(shown)}}
        dup = {**form, f"rank_{shown[0]}": "1"}
        assert c.post(f"/tasks/{aid}", data=dup).status_code == 400
        assert c.post(f"/tasks/{aid}", data=form, follow_redirects=False).status_code == 303
    with session_scope(sqlite_url) as s:
        fb = s.scalar(select(Feedback).where(Feedback.kind == "ranking"))
        assert fb is not None and fb.payload["order"] == list(reversed(shown))


def test_model_output_is_escaped(sqlite_store: Any, add_campaign: Any, login: Any) -> None:
    cid = add_campaign(sqlite_store.url, "xss", "pairwise", overlap=1)
    with TestClient(create_app(sqlite_store.url)) as c:
        login(c, "alice")
        page = c.get(f"/tasks/{_next(c, cid)}")
    assert "<script>alert" not in page.text
    assert "&lt;script&gt;alert(&#x27;x0&#x27;)&lt;/script&gt;" in page.text
    assert "<strong>0</strong>" in page.text and "<code>code</code>" in page.text
    assert '<pre><code class="lang-python">print(0)' in page.text
    assert page.text.count('class="msg role-') == 3  # the multi-turn prompt as a chat
    assert "0 / 4 done" in page.text  # progress counts the task on screen
    assert "script-src 'self'" in page.headers["content-security-policy"]


def test_render_markdown_never_emits_input_markup() -> None:
    nasty = ('<img src=x onerror=alert(1)> **<b>x</b>** `<i>` [a](javascript:alert(1))\n'
             '```"><script>\n<svg onload=alert(1)>\n```\n# <h1>')
    html = str(render_markdown(nasty))
    tags = set(re.findall(r"<\s*([a-zA-Z0-9]+)", html))
    assert tags <= {"p", "strong", "em", "code", "pre", "ul", "ol", "li", "br", "h3"}
    assert "javascript:alert" in html and "href" not in html and "onerror" in html
    assert "<script" not in html and "<svg" not in html and "<img" not in html


def test_admin_progress_agreement_and_export(sqlite_store: Any, add_campaign: Any,
                                             login: Any) -> None:
    cid = add_campaign(sqlite_store.url, "agree", "pairwise", overlap=2)
    app = create_app(sqlite_store.url)
    for user, side in (("alice", "tie"), ("bob", "tie")):
        with TestClient(app) as c:
            csrf = login(c, user)
            for _ in range(2):
                c.post(f"/tasks/{_next(c, cid)}", data={"csrf_token": csrf, "choice": side})
    with TestClient(app) as c:
        login(c, "root")
        page = c.get(f"/admin/campaigns/{cid}")
        assert page.status_code == 200
        assert "4 / 8 labels" in page.text
        assert "100.0% over 2 annotator pairs" in page.text
        export = c.get(f"/admin/campaigns/{cid}/export.jsonl")
        lines = [json.loads(x) for x in export.text.splitlines()]
        assert len(lines) == 4 and {x["annotator"] for x in lines} == {"alice", "bob"}
        assert all(x["choice"] == "tie" and x["shown_left_id"] for x in lines)
        assert "agree" in c.get("/admin").text


def test_blind_mode_hides_others_and_open_mode_shows_counts(sqlite_store: Any,
                                                            add_campaign: Any,
                                                            login: Any) -> None:
    blind = add_campaign(sqlite_store.url, "blind", "pairwise", overlap=2, blind=True)
    open_ = add_campaign(sqlite_store.url, "open", "pairwise", overlap=2, blind=False)
    app = create_app(sqlite_store.url)
    with TestClient(app) as alice:
        csrf = login(alice, "alice")
        for cid in (blind, open_):
            alice.post(f"/tasks/{_next(alice, cid)}", data={"csrf_token": csrf, "choice": "tie"})
    with TestClient(app) as bob:
        login(bob, "bob")
        blind_page = bob.get(f"/tasks/{_next(bob, blind)}").text
        open_page = bob.get(f"/tasks/{_next(bob, open_)}").text
    assert "other annotator" not in blind_page
    assert "1 other annotator(s) labelled this item." in open_page
    assert "tie" not in blind_page.split('id="task-form"')[0]


def test_abandoned_assignment_frees_its_slot(sqlite_store: Any, add_campaign: Any) -> None:
    import datetime as dt

    from prefline.collect.campaigns import ASSIGNMENT_TTL, next_assignment
    from prefline.store.collect_models import Campaign, User

    cid = add_campaign(sqlite_store.url, "ttl", "pairwise", overlap=1)
    with session_scope(sqlite_store.url) as s:
        campaign = s.get(Campaign, cid)
        alice, bob = (s.scalar(select(User).where(User.username == n)) for n in ("alice", "bob"))
        first = next_assignment(s, campaign, alice)  # type: ignore[arg-type]
        assert first is not None
        again = next_assignment(s, campaign, alice)  # type: ignore[arg-type]
        assert again is not None and again.id == first.id  # an open task is handed back
        taken = next_assignment(s, campaign, bob)  # type: ignore[arg-type]
        assert taken is not None and taken.item_id != first.item_id
        first.assigned_at -= ASSIGNMENT_TTL + dt.timedelta(minutes=1)
        s.flush()
        s.delete(taken)
        s.flush()
        # bob now gets alice's abandoned item first (lowest position, slot free again)
        reclaimed = next_assignment(s, campaign, bob)  # type: ignore[arg-type]
        assert reclaimed is not None and reclaimed.item_id == first.item_id
