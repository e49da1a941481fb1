"""``prefline cache info|clear``: where caches are, their sizes, and clearing only inside the root."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli_runner import run_cli
from prefline.base import cache
from prefline.base.paths import CACHE_TAG, cache_dir


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    return run_cli(list(args), capsys)


@pytest.fixture
def roots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """A fresh PREFLINE_HOME and PREFLINE_CACHE (neither exists yet)."""
    home, root = tmp_path / "home", tmp_path / "cache"
    monkeypatch.setenv("PREFLINE_HOME", str(home))
    monkeypatch.setenv("PREFLINE_CACHE", str(root))
    return home, root


def _fill(root: Path) -> None:
    """Two reference log-prob files (10 + 20 bytes) and one converted model (100 bytes)."""
    (root / "ref_logps").mkdir(parents=True)
    (root / "ref_logps" / "a.pt").write_bytes(b"x" * 10)
    (root / "ref_logps" / "b.pt").write_bytes(b"x" * 20)
    (root / "models" / "m-0123").mkdir(parents=True)
    (root / "models" / "m-0123" / "model.safetensors").write_bytes(b"x" * 100)


def test_info_names_root_kinds_sizes_and_runs(roots: tuple[Path, Path],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    home, root = roots
    _fill(cache_dir())
    (home / "runs" / "dpo-1").mkdir(parents=True)
    (home / "runs" / "dpo-1" / "ckpt.pt").write_bytes(b"x" * 7)
    code, out, _ = _cli(capsys, "cache", "info", "--json")
    assert code == 0
    got = json.loads(out)
    assert got["root"] == str(root) and got["set_by"] == "PREFLINE_CACHE"
    assert got["data_dir"] == str(home)
    by_name = {u["name"]: u for u in got["caches"]}
    assert set(by_name) == set(cache.KINDS)
    assert (by_name["ref-logps"]["files"], by_name["ref-logps"]["bytes"]) == (2, 30)
    assert (by_name["models"]["entries"], by_name["models"]["bytes"]) == (1, 100)
    assert by_name["judges"]["files"] == 0 and got["total_bytes"] == 130
    assert (got["runs"]["files"], got["runs"]["bytes"]) == (1, 7)
    code, text, _ = _cli(capsys, "cache", "info")
    assert code == 0 and f"cache root: {root}" in text and "ref-logps" in text
    assert "130 B in all" in text and "not a cache" in text


def test_root_defaults_to_home_and_is_tagged(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREFLINE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("PREFLINE_CACHE")
    info = cache.info()
    assert info.root == tmp_path / "home" / "cache" and info.set_by == "PREFLINE_HOME"
    assert (info.root / CACHE_TAG).read_text().startswith(
        "Signature: 8a477f597d28d172789f06886806bc55")
    assert cache.kind_dir("ref-logps") == info.root / "ref_logps"


def test_reference_logps_land_in_their_kind_folder(roots: tuple[Path, Path]) -> None:
    from prefline.train.policy_batch import EncodedPair
    from prefline.train.ref_cache import cached_path

    path = cached_path([EncodedPair((1, 2), (3,), (4,))], "fingerprint", "fp32")
    assert path.parent == roots[1] / "ref_logps"


def test_clear_needs_yes_and_deletes_one_kind_only(roots: tuple[Path, Path],
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    home, root = roots
    _fill(cache_dir())
    (home / "runs").mkdir(parents=True)
    code, _, err = _cli(capsys, "cache", "clear", "--what", "ref-logps")
    assert code == 2 and "would delete 2 files (30 B) of ref-logps" in err and "--yes" in err
    assert (root / "ref_logps" / "a.pt").exists()  # nothing deleted without --yes
    code, out, _ = _cli(capsys, "cache", "clear", "--what", "ref-logps", "--yes")
    assert code == 0 and "deleted ref-logps: 2 files" in out
    assert not (root / "ref_logps").exists()
    assert (root / "models" / "m-0123" / "model.safetensors").exists()
    assert (root / CACHE_TAG).exists() and (home / "runs").exists()
    code, out, _ = _cli(capsys, "cache", "clear", "--yes", "--json")
    assert code == 0 and json.loads(out)["bytes"] == 100
    assert sorted(p.name for p in root.iterdir()) == [CACHE_TAG]
    code, out, _ = _cli(capsys, "cache", "clear", "--what", "all")
    assert code == 0 and "nothing to clear" in out
    code, _, err = _cli(capsys, "cache", "clear", "--what", "everything", "--yes")
    assert code == 2 and "unknown cache 'everything'" in err


def test_clear_never_follows_links_out_of_the_root(roots: tuple[Path, Path],
                                                   tmp_path: Path) -> None:
    _, root = roots
    outside = tmp_path / "precious"
    (outside / "sub").mkdir(parents=True)
    (outside / "sub" / "keep.txt").write_text("mine")
    cache_dir()
    (root / "models").symlink_to(outside, target_is_directory=True)
    (root / "ref_logps").mkdir()
    (root / "ref_logps" / "link.pt").symlink_to(outside / "sub" / "keep.txt")
    (root / "ref_logps" / "dir-link").symlink_to(outside / "sub", target_is_directory=True)
    done = cache.clear("all")
    assert {u.name for u in done.removed} == {"models", "ref-logps"}
    assert not (root / "models").exists() and not (root / "ref_logps").exists()
    assert (outside / "sub" / "keep.txt").read_text() == "mine"


def test_clear_refuses_a_root_prefline_did_not_make(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    mine = tmp_path / "my-home"
    (mine / "models").mkdir(parents=True)
    (mine / "models" / "thesis.bin").write_bytes(b"x")
    (mine / "notes.txt").write_text("x")
    monkeypatch.setenv("PREFLINE_CACHE", str(mine))
    assert not (cache_dir() / CACHE_TAG).exists()  # not empty when first used: never tagged
    code, _, err = _cli(capsys, "cache", "clear", "--what", "models", "--yes")
    assert code == 2 and "has no CACHEDIR.TAG" in err
    assert (mine / "models" / "thesis.bin").exists() and (mine / "notes.txt").exists()
    info = cache.info()
    assert [u.name for u in info.other] == ["notes.txt"]


def test_an_untagged_root_of_kind_folders_only_is_ours(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A cache written before the tag existed holds nothing but kind folders."""
    old = tmp_path / "old-cache"
    _fill(old)
    monkeypatch.setenv("PREFLINE_CACHE", str(old))
    assert cache.clear("models").done and not (old / "models").exists()
    assert (old / CACHE_TAG).exists() and (old / "ref_logps" / "a.pt").exists()


@pytest.mark.parametrize("command", [["train", "dpo"], ["train", "reward"],
                                     ["eval", "policy"]])
def test_help_says_where_files_and_caches_go(command: list[str],
                                             capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "400")  # one help entry per line
    code, out, _ = _cli(capsys, *command, "--help")
    text = " ".join(out.replace("│", " ").split())  # rich wraps long help inside box borders
    assert code == 0 and "$PREFLINE_HOME" in text and "$PREFLINE_CACHE" in text
    assert "prefline cache info" in text


def test_human_bytes() -> None:
    assert [cache.human_bytes(n) for n in (0, 999, 1536, 2_600_000_000)] == \
        ["0 B", "999 B", "1.5 KB", "2.6 GB"]
