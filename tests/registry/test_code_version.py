"""code_version: commit when clean, ``.dirty-<hash of the changes>`` when not, never clean
by mistake, and never an exception."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from prefline.base import VERSION as __version__
from prefline.registry import clear_code_version_cache, code_version, get_artifact, record
from prefline.registry import version as version_mod

DIRTY = re.compile(r"\.dirty-([0-9a-f]{12})$")


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com",
                           "-c", "commit.gpgsign=false", *args], cwd=repo, check=True,
                          capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A checkout with one committed file under src/ and an ignored build folder."""
    root = tmp_path / "repo"
    (root / "src").mkdir(parents=True)
    (root / "src" / "mod.py").write_text("x = 1\n")
    (root / ".gitignore").write_text("build/\n")
    git(root, "init", "-q")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "first")
    return root


def dirty_hash(repo: Path) -> str:
    match = DIRTY.search(code_version(repo))
    assert match, code_version(repo)
    return match.group(1)


def test_clean_checkout_is_version_plus_commit(repo: Path) -> None:
    assert code_version(repo) == f"{__version__}+{git(repo, 'rev-parse', 'HEAD')[:12]}"
    (repo / "notes.txt").write_text("untracked, outside src/")
    (repo / "build").mkdir()
    (repo / "build" / "out.py").write_text("ignored")
    assert code_version(repo) == f"{__version__}+{git(repo, 'rev-parse', 'HEAD')[:12]}"


def test_a_changed_tree_is_dirty_and_the_hash_follows_the_diff(repo: Path) -> None:
    commit = git(repo, "rev-parse", "HEAD")[:12]
    (repo / "src" / "mod.py").write_text("x = 2\n")
    assert code_version(repo).startswith(f"{__version__}+{commit}.dirty-")
    first = dirty_hash(repo)
    assert dirty_hash(repo) == first  # same change, same version
    (repo / "src" / "mod.py").write_text("x = 3\n")
    assert dirty_hash(repo) != first
    git(repo, "add", "src/mod.py")  # staged changes count too
    assert dirty_hash(repo) != first
    git(repo, "checkout", "-q", "HEAD", "--", "src/mod.py")
    assert code_version(repo) == f"{__version__}+{commit}"


def test_untracked_files_under_src_make_it_dirty(repo: Path) -> None:
    new = repo / "src" / "new.py"
    new.write_text("y = 1\n")
    first = dirty_hash(repo)
    new.write_text("y = 2\n")  # the content is hashed, not just the name
    assert dirty_hash(repo) != first


def test_outside_a_checkout_it_is_the_package_version(tmp_path: Path, repo: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    assert code_version(plain) == __version__
    # a package installed under an ignored folder of some other repository
    site = repo / "build" / "lib" / "prefline"
    site.mkdir(parents=True)
    assert code_version(site) == __version__
    monkeypatch.setenv("PATH", str(plain))  # no git at all
    assert code_version(repo) == __version__


@pytest.fixture
def package_in(repo: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Pretend prefline itself was loaded from ``repo``."""
    monkeypatch.setattr(version_mod, "PACKAGE_DIR", repo / "src")
    clear_code_version_cache()
    yield repo
    clear_code_version_cache()


def test_a_dirty_run_is_recorded_as_dirty(package_in: Path, sqlite_url: str) -> None:
    (package_in / "src" / "mod.py").write_text("x = 'changed'\n")
    art = record(sqlite_url, "policy", package_in / "model", config=None, metrics=None,
                 inputs=[])
    stored = get_artifact(art, sqlite_url)
    assert stored is not None and stored.code_version is not None
    assert DIRTY.search(stored.code_version), stored.code_version


def test_a_failure_after_the_commit_is_known_is_dirty_unknown(
        package_in: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(top: Path) -> str | None:
        raise subprocess.TimeoutExpired("git status", 30)

    monkeypatch.setattr(version_mod, "dirty_digest", broken)
    assert code_version().endswith(".dirty-unknown")
