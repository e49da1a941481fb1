"""The HTTP judge against a real chat-completions server on loopback, with scripted faults."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from prefline.base.errors import PreflineError
from prefline.judges import make_judge
from prefline.judges.http import HttpJudge, parse_verdict


class Script:
    """Shared state of the fake server: request counts and in-flight high-water mark."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: dict[str, int] = {}
        self.inflight = self.peak = 0


def _reply_for(mode: str, user: str, n: int) -> tuple[int, str]:
    if mode == "good":  # a careful judge: prefers whichever response contains GOOD
        a_part = user.split("[Response A]")[1].split("[Response B]")[0]
        return 200, "A is clearly better. [[A]]" if "GOOD" in a_part else "B wins.\n[[B]]"
    if mode == "biased":
        return 200, "Answer: A"
    if mode == "malformed":
        return 200, "Both have merits; hard to say."
    if mode == "json":
        return 200, 'Reasoning... {"winner": "A"}' if "GOOD" in user.split("[Response B]")[0] else '{"winner": "B"}'
    if mode == "flaky":
        return (500, "") if n <= 2 else (200, "[[A]]")
    if mode == "auth":
        return 401, ""
    return 404, ""


def _handler(script: Script) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            mode = self.path.strip("/").split("/")[0]
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with script.lock:
                script.calls[mode] = n = script.calls.get(mode, 0) + 1
                script.inflight += 1
                script.peak = max(script.peak, script.inflight)
            try:
                time.sleep(1.0 if mode == "slow" else 0.02)
                status, text = _reply_for(mode, body["messages"][0]["content"], n)
                data = json.dumps({"choices": [{"message": {"role": "assistant", "content": text}}]})
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(data.encode())
            except (BrokenPipeError, ConnectionResetError):
                pass
            finally:
                with script.lock:
                    script.inflight -= 1
    return Handler


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, Script]]:
    script = Script()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(script))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", script
    httpd.shutdown()


ITEMS = [("Q?", "GOOD answer", "bad answer"), ("Q2?", "meh", "GOOD one"), ("Q3?", "x GOOD", "y")]


def test_good_judge_both_orders_concurrent_and_cached(server: tuple[str, Script]) -> None:
    url, script = server
    judge = make_judge(f"openai:{url}/good/v1#judge-model", {"concurrency": 2})
    assert judge.config()["model"] == "judge-model"
    got = judge.judge_many(ITEMS)  # type: ignore[attr-defined]
    assert [v.choice for v in got] == ["a", "b", "a"] and got[0].details["orders"] == ["a", "a"]
    assert script.calls["good"] == 6 and script.peak <= 2
    again = make_judge(f"openai:{url}/good/v1#judge-model").judge(*ITEMS[1])
    assert again.choice == "b" and script.calls["good"] == 6  # served from the disk cache


def test_position_bias_becomes_tie_and_json_verdicts_parse(server: tuple[str, Script]) -> None:
    url, _ = server
    v = HttpJudge(f"{url}/biased").judge("Q?", "GOOD", "bad")
    assert v.choice == "tie" and "inconsistent" in v.rationale
    assert HttpJudge(f"{url}/json").judge("Q?", "bad", "GOOD").choice == "b"


def test_malformed_reply_is_an_unusable_tie_and_not_cached(server: tuple[str, Script]) -> None:
    url, script = server
    judge = HttpJudge(f"{url}/malformed")
    v = judge.judge("Q?", "a", "b")
    assert v.choice == "tie" and v.confidence == 0.0 and not v.valid
    judge.judge("Q?", "a", "b")
    assert script.calls["malformed"] == 4  # asked again: malformed replies are not cached


def test_retries_5xx_then_succeeds(server: tuple[str, Script]) -> None:
    url, script = server
    v = HttpJudge(f"{url}/flaky", retries=3, backoff=0.01, concurrency=1).judge("Q?", "a", "b")
    assert script.calls["flaky"] == 4 and v.details["orders"] == ["a", "b"] and v.choice == "tie"


def test_timeout_auth_and_unreachable_fail_clearly(server: tuple[str, Script]) -> None:
    url, _ = server
    with pytest.raises(PreflineError, match=r"failed after 2 attempts: no reply within 0.2 s"):
        HttpJudge(f"{url}/slow", timeout=0.2, retries=1, backoff=0.01).judge("Q?", "a", "b")
    with pytest.raises(PreflineError, match="HTTP 401"):
        HttpJudge(f"{url}/auth", retries=3).judge("Q?", "a", "b")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(PreflineError, match="cannot connect"):
        HttpJudge(f"http://127.0.0.1:{port}", retries=1, backoff=0.01).judge("Q?", "a", "b")
    with pytest.raises(PreflineError, match="NO_SUCH_KEY_VAR"):
        HttpJudge(url, api_key_env="NO_SUCH_KEY_VAR")


@pytest.mark.parametrize(("text", "want"), [
    ("blah [[A]]", "a"), ("[[B]] then [[C]]", "tie"), ('{"choice": "b"}', "b"),
    ("Final answer: **B**", "b"), ("Verdict - tie", "tie"), ("Response A is better.", "a"),
    ("B", "b"), ("I cannot decide", None), ("", None),
])
def test_parse_verdict(text: str, want: str | None) -> None:
    assert parse_verdict(text) == want


def test_unknown_judge_option_is_named() -> None:
    with pytest.raises(PreflineError, match="timeuot"):
        make_judge("openai:http://127.0.0.1:9#m", {"timeuot": 3})
