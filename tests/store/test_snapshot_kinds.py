"""Snapshots over every feedback kind: kinds recorded in stats, ``--kind`` filters, the
implicit-signal rule (off by default), hash stability, and the derived CLI."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cli_runner import run_cli
from prefline.base import config
from prefline.base.errors import PreflineError
from prefline.formats.examples import UnpairedExample
from prefline.formats.jsonl import write_jsonl
from prefline.store.context import Context, Store
from prefline.store.ingest import import_file
from prefline.store.snapshot_config import Filters, ImplicitRule, SnapshotConfig
from prefline.store.snapshots import run, snapshot_examples, snapshot_items

# Guards snapshot-hash stability: these are the content hashes the code before feedback
# kinds existed (commit 8a4bbc1) gave for the same stores and settings,
# computed once and pinned. A snapshot with no implicit signals (and, by default, every
# snapshot) must keep its hash, or every registered model's data lineage would break.
MIXED_HASH = "2201d6597878214da295e19942fd19a47cf213a9a7105b915dbc40ad45d716ed"
VOTES_HASH = "4bee62db953259626a84e3aba8cf20a3a06aa9e313b45516d42dfd9c912af45c"
VOTES_BT_HASH = "c6af44c8e0e441fdd178275870b8faffb05d9daa4168e7c47a6e70f49c75f272"
VOTES: list[dict[str, Any]] = [
    {"prompt": "q", "chosen": "a", "rejected": "b", "annotator": "h1"},
    {"prompt": "q", "chosen": "b", "rejected": "a", "annotator": "h2"},
    {"prompt": "q", "chosen": "a", "rejected": "b", "annotator": "h2"},
    {"prompt": "q", "chosen": "a", "rejected": "b", "annotator": "h3", "tie": True},
    {"prompt": "q", "chosen": "a", "rejected": "c", "annotator": "h1"},
    {"prompt": "q", "chosen": "c", "rejected": "a", "annotator": "h2"},
    {"prompt": "r", "chosen": "x", "rejected": "y", "annotator": "j",
     "annotator_kind": "ai_judge", "tags": ["judge"]},
]


def snap(url: str, **values: Any) -> Any:
    cfg = config.build(SnapshotConfig, values)
    return run(cfg, Context(store=Store.open(url)))


def binaries(url: str, snapshot_id: int) -> dict[str, UnpairedExample]:
    out = {}
    for ex in snapshot_examples(snapshot_id, "all", url):
        if isinstance(ex, UnpairedExample):
            out[ex.completion] = ex
    return out


MixedStore = Callable[[str], str]


def test_default_snapshot_records_kinds_and_leaves_implicit_out(db_url: str,
                                                                mixed_store: MixedStore) -> None:
    result = snap(mixed_store(db_url), test_fraction=0.5)
    s = result.stats
    assert result.content_hash == MIXED_HASH and not result.reused
    assert s.feedback_by_kind == {"pairwise": 3, "ranking": 1, "rating": 2, "binary": 4,
                                  "implicit": 6}
    assert s.items_by_kind == {"pairwise": 2, "ranking": 1, "rating": 1, "binary": 2,
                               "implicit": 0}
    assert s.feedback == 10 and s.items == 6
    assert s.dropped == {"binary": {"responses with evenly split votes": 1},
                         "implicit": {"records of an unselected kind": 6}}
    assert sum(s.counts.values()) == 6 and s.by_split()["pairwise"] == {"test": 1, "train": 1}
    assert "implicit" not in result.recipe["kinds"] and "implicit" not in result.recipe
    assert set(binaries(db_url, result.id)) == {"thumb up", "meh"}
    assert all(not ex.meta for ex in binaries(db_url, result.id).values())
    assert result.to_json()["stats"]["feedback_by_kind"]["implicit"] == 6


def test_kind_filter_keeps_only_the_selected_kinds(sqlite_url: str, mixed_store: MixedStore) -> None:
    url = mixed_store(sqlite_url)
    result = snap(url, kinds="rating,pairwise")
    assert result.recipe["kinds"] == ["pairwise", "rating"]  # canonical order
    kinds = {it["kind"] for it in snapshot_items(result.id, "all", url)}
    assert kinds == {"pairwise", "rating"}
    assert result.stats.dropped["ranking"] == {"records of an unselected kind": 1}
    assert result.stats.dropped["binary"] == {"records of an unselected kind": 4}
    # Only implicit feedback comes from the API key "app": say so rather than "nothing".
    with pytest.raises(PreflineError, match="records of other kinds match: implicit 6"):
        snap(url, kinds="ranking", source="api:app")


def test_implicit_signals_map_to_weighted_binary_labels(db_url: str, mixed_store: MixedStore) -> None:
    url = mixed_store(db_url)
    result = snap(url, kinds="pairwise,ranking,rating,binary,implicit")
    by = binaries(url, result.id)
    mapped = {text: (ex.label, ex.meta["weight"], ex.meta["source"])
              for text, ex in by.items() if ex.meta}
    assert mapped == {"first try": (False, 1.0, "implicit:regenerate"),
                      "edited": (False, 1.0, "implicit:edit"),
                      "copied": (True, 0.5, "implicit:copy"),
                      "read long": (True, 0.5, "implicit:dwell_ms")}
    assert result.stats.items_by_kind["implicit"] == 4
    assert result.stats.dropped["implicit"] == {"click records (rule: ignore)": 1,
                                                "dwell_ms records below 30000 ms": 1}
    assert result.recipe["implicit"]["copy_weight"] == 0.5
    assert result.content_hash != MIXED_HASH
    # The rule is configurable: clicks count, short reads count, regenerations do not.
    custom = snap(url, kinds="implicit", click="desirable", click_weight=0.25,
                  dwell_min_ms=1000, regenerate="ignore")
    remapped = {text: (ex.label, ex.meta["weight"]) for text, ex in binaries(url, custom.id).items()}
    assert remapped == {"edited": (False, 1.0), "copied": (True, 0.5), "read long": (True, 0.5),
                      "read short": (True, 0.5), "clicked": (True, 0.25)}
    assert custom.stats.dropped["implicit"] == {"regenerate records (rule: ignore)": 1}


def test_pairwise_only_hashes_unchanged(db_url: str, tmp_path: Path) -> None:
    import_file(write_jsonl(tmp_path / "votes.jsonl", VOTES), db_url)
    assert snap(db_url).content_hash == VOTES_HASH
    assert snap(db_url, ties="keep", aggregate="bt", test_fraction=0.5,
                seed=3).content_hash == VOTES_BT_HASH
    # Asking for implicit signals where there are none changes nothing.
    again = snap(db_url, kinds="pairwise,implicit")
    assert again.content_hash == VOTES_HASH and again.reused


@pytest.mark.parametrize(("values", "field"), [
    ({"kinds": "pairwise,thumbs"}, "kinds"), ({"kinds": ""}, "kinds"),
    ({"copy_weight": 0}, "copy_weight"), ({"edit": "bad"}, "edit"),
    ({"dwell_min_ms": -1}, "dwell_min_ms"), ({"since": "2026-02-01", "until": "2026-01-01"}, "until"),
    ({"since": "last week"}, "since"), ({"annotator_kind": "robot"}, "annotator_kind"),
    ({"aggregate": "mean"}, "aggregate"), ({"test_fraction": 1.0}, "test_fraction"),
])
def test_bad_settings_name_the_field(values: dict[str, Any], field: str) -> None:
    with pytest.raises(PreflineError) as err:
        config.build(SnapshotConfig, values, command="snapshot create")
    assert str(err.value.field).split(".")[-1] == field  # leaf name or its dotted path


def test_config_objects_validate_without_the_builder() -> None:
    with pytest.raises(PreflineError, match="weight > 0"):
        ImplicitRule(copy_weight=float("nan"))
    with pytest.raises(PreflineError, match="feedback kinds"):
        SnapshotConfig(kinds=("pairwise", "thumbs"))
    assert SnapshotConfig(kinds="rating").kinds == ("rating",)  # type: ignore[arg-type]
    assert Filters(since="2026-01-01T12:00+02:00").window()[0].hour == 10  # type: ignore[union-attr]


cli = run_cli


def test_cli_kind_option_repeated_or_comma_list(sqlite_url: str, mixed_store: MixedStore,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    url = mixed_store(sqlite_url)
    code, out, err = cli(["snapshot", "create", "--kind", "pairwise", "--kind", "rating",
                          "--db", url, "--json"], capsys)
    assert code == 0, err
    first = json.loads(out)
    assert first["recipe"]["kinds"] == ["pairwise", "rating"]
    assert set(first["stats"]["counts"]) <= {f"{k}/{s}" for k in ("pairwise", "rating")
                                             for s in ("train", "test")}
    code, out, _ = cli(["snapshot", "create", "--kind", "rating,pairwise", "--db", url, "--json"],
                       capsys)
    assert code == 0 and json.loads(out)["content_hash"] == first["content_hash"]
    code, _, err = cli(["snapshot", "create", "--kind", "thumbs", "--db", url], capsys)
    assert code == 2 and "field 'kinds'" in err and "thumbs" in err


def test_cli_create_and_show_print_per_kind_counts(sqlite_url: str, mixed_store: MixedStore,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    url = mixed_store(sqlite_url)
    code, out, err = cli(["snapshot", "create", "--name", "all", "--kind",
                          "pairwise,ranking,rating,binary,implicit", "--copy-weight", "0.3",
                          "--db", url], capsys)
    assert code == 0, err
    assert "implicit  6 records -> 4 items (binary) | left out: 1 click records (rule: ignore); " \
        "1 dwell_ms records below 30000 ms" in out
    code, out, _ = cli(["snapshot", "show", "all", "--db", url], capsys)
    lines = out.splitlines()
    assert code == 0
    assert "  pairwise  3 records -> 2 items" in lines
    assert "  binary    4 records -> 2 items | left out: 1 responses with evenly split votes" \
        in lines
    assert any(ln.startswith("  implicit  6 records -> 4 items (binary)") for ln in lines)
    assert "copy_weight=0.3" in out  # the recipe, readable (issue 16: no dict reprs)


def test_cli_help_lists_every_setting(capsys: pytest.CaptureFixture[str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "220")
    code, out, _ = cli(["snapshot", "create", "--help"], capsys)
    assert code == 0
    settings = config.settings(SnapshotConfig)
    # incl. replace (issue 16: unique snapshot names); segment, purpose, require_consent and
    # min_group_size (issue 14: personal data)
    assert len(settings) == 28
    for s in settings:
        flag = "--kind" if s.name == "kinds" else "--" + s.name.replace("_", "-")
        assert flag in out, flag
        assert s.doc.split()[0] in out  # its docstring is the help text
    code, out, _ = cli(["config", "show", "snapshot", "kinds=implicit", "--json"], capsys)
    assert code == 0 and json.loads(out)["kinds"] == ["implicit"]


def test_feedback_kinds_doc_states_the_implicit_rule_as_coded() -> None:
    """docs/feedback-kinds.md lists every implicit setting as a flag, with its default."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "feedback-kinds.md").read_text()
    rule = ImplicitRule()
    for s in config.settings(ImplicitRule):
        assert f"`--{s.name.replace('_', '-')}`" in doc, s.name
    for signal in ("regenerate", "edit", "copy", "dwell", "click"):
        label, weight = rule.rule("dwell_ms" if signal == "dwell" else signal)  # type: ignore[misc]
        row = next(ln for ln in doc.splitlines() if f"(`--{signal}`)" in ln)
        assert f"| {label} (`--{signal}`) | {weight} (`--{signal}-weight`) |" in row
    assert f"({rule.dwell_min_ms:.0f})" in doc
