"""Issue 16, API docs offline: /docs and /redoc work under the app's CSP with local assets.

Reproduction: both pages were blank, because the CSP blocked Swagger UI's inline script and
its CDN assets (and an offline server cannot reach the CDN anyway).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlparse

import pytest
from fastapi.testclient import TestClient

from prefline.collect import create_app
from prefline.collect.apidocs import repair_discriminators

ROUTES = ("/api/v1/log", "/api/v1/feedback", "/api/v1/feedback/batch", "/api/v1/whoami")


def test_docs_pages_use_local_assets_and_no_inline_script(sqlite_store: Any) -> None:
    with TestClient(create_app(sqlite_store.url)) as c:
        for path in ("/docs", "/redoc"):
            page = c.get(path)
            assert page.status_code == 200, path
            csp = page.headers["content-security-policy"]
            script_src = re.search(r"script-src ([^;]*)", csp).group(1)  # type: ignore[union-attr]
            assert script_src.strip() == "'self'", csp  # no inline script, no CDN
            assert "http" not in csp
            scripts = re.findall(r"<script([^>]*)>(.*?)</script>", page.text, re.S)
            assert scripts and all('src="/static/' in attrs and not body.strip()
                                   for attrs, body in scripts), scripts
            for url in re.findall(r'(?:src|href)="([^"]+)"', page.text):
                assert url.startswith("/static/"), url
                assert c.get(url).status_code == 200, url
        assert "no-store" not in c.get("/static/apidocs/swagger-ui-bundle.js").headers.get(
            "cache-control", "")


def test_spec_discriminators_map_each_kind_to_one_schema(sqlite_store: Any) -> None:
    """FastAPI's spec for ``body: Event`` mapped every kind to the whole union, which
    stopped ReDoc ("e.startsWith is not a function")."""
    with TestClient(create_app(sqlite_store.url)) as c:
        spec = c.get("/openapi.json").json()
    body = spec["paths"]["/api/v1/feedback"]["post"]["requestBody"]["content"][
        "application/json"]["schema"]
    mapping = body["discriminator"]["mapping"]
    assert mapping["pairwise"] == "#/components/schemas/PairwiseEvent"
    assert set(mapping) == {"pairwise", "rating", "binary", "implicit", "ranking"}
    assert body["oneOf"] == [{"$ref": ref} for ref in mapping.values()]
    before = repr(spec)
    repair_discriminators(spec)  # idempotent
    assert repr(spec) == before


def _watch(page: Any, host: str) -> tuple[list[str], list[str]]:
    """(errors the page logs or throws, URLs answered by any other host), kept up to date."""
    errors: list[str] = []
    elsewhere: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("response", lambda r: elsewhere.append(r.url)
            if urlparse(r.url).netloc not in (host, "") else None)
    return errors, elsewhere


@pytest.mark.browser
def test_browser_opens_docs_offline_and_sees_the_routes(server: str, chromium: Any) -> None:
    for path in ("/docs", "/redoc"):
        page = chromium.new_page()
        errors, elsewhere = _watch(page, urlparse(server).netloc)
        page.goto(f"{server}{path}")
        if path == "/docs":
            page.wait_for_selector(".opblock-summary-path")
            shown = page.locator(".opblock-summary-path").all_inner_texts()
            assert all(route in shown for route in ROUTES), shown
        else:
            page.wait_for_selector("h2:has-text('Log a prompt and the responses')")
            text = page.inner_text("body")
            assert all(route in text for route in ROUTES), text[:500]
        # ReDoc's footer logo points at its CDN: the CSP blocks it and it hides itself
        left = [e for e in errors if "cdn.redoc.ly/redoc/logo-mini.svg" not in e]
        assert left == [], (path, left)
        assert elsewhere == [], (path, elsewhere)  # nothing was fetched from another host
        page.close()
