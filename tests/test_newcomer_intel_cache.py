"""The MISP galaxies and warning lists are read fast: five cluster files instead of ~100, and
the warning lists as a digest in the user cache, built once and equal to pymispwarninglists'
own lookups (issue #9, "A newcomer's first hour")."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from kinship.intel import actors, iocs
from kinship.intel.actors import ActorKB, load_clusters
from kinship.intel.iocs import WarningListDigest, WarningListFilter, iocs_from_text


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache folder for the tests that need the full digest (built once, ~3 s)."""
    return tmp_path_factory.mktemp("kinship-cache")


@pytest.fixture
def cache(shared_cache: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KINSHIP_CACHE", str(shared_cache))
    return shared_cache


@pytest.fixture
def few_lists(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Only a few of the package's warning lists (the public DNS resolvers among them), so
    that a test which builds the digest builds a small one."""
    files = [f for f in iocs._warning_list_files()
             if f.parent.name in ("public-dns-v4", "google", "rfc5737")]
    assert any(f.parent.name == "public-dns-v4" for f in files)
    monkeypatch.setattr(iocs, "_warning_list_files", lambda: files)
    return files


def test_warning_list_digest_answers_like_pymispwarninglists(cache: Path) -> None:
    from pymispwarninglists.api import WarningLists

    lists = WarningLists(slow_search=False)
    digest = iocs.load_warning_lists()
    rng = random.Random(9)
    values = ["8.8.8.8", "google.com", "www.microsoft.com", "evil-c2.example-cdn.net",
              "203.0.113.77", "", "ünïcödé.example"]
    for wl in lists.values():
        members = sorted(str(v) for v in wl.set)
        values += rng.sample(members, min(5, len(members)))
    values += [v + "x" for v in values[:200]]  # near misses
    for v in values:
        want = sorted(str(w.name) for w in lists.search(v))
        assert sorted(digest.search(v)) == want, v
    assert len(digest.names) == len(lists)


def test_warning_list_cache_is_built_once(tmp_path: Path, few_lists: list[Path],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("KINSHIP_CACHE", str(cache))
    first = iocs.load_warning_lists()
    assert len(first.names) == len(few_lists)
    folders = [p for p in cache.iterdir() if p.name.startswith("warninglists-")]
    assert len(folders) == 1 and (folders[0] / "complete").is_file()

    def no_rebuild(files: list[Path]) -> list[tuple[str, list[str]]]:
        raise AssertionError("the cached digest should have been read")

    monkeypatch.setattr(iocs, "_read_warning_lists", no_rebuild)
    again = iocs.load_warning_lists()
    assert again.names == first.names and len(again.hashes) == len(first.hashes)
    assert again.search("8.8.8.8") == first.search("8.8.8.8") != []
    # a filter on the cached digest filters like before
    res = iocs_from_text("beacon to 8.8.8.8 and 198.51.100.23.example-c2.net",
                         filter_benign=False)
    wl = WarningListFilter(again)
    hits = {i.value: wl.hits(i) for i in res.iocs}
    assert hits["8.8.8.8"] and not hits["198.51.100.23.example-c2.net"]


def test_unwritable_cache_still_filters(tmp_path: Path, few_lists: list[Path],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("KINSHIP_CACHE", str(blocker / "cache"))
    digest = iocs.load_warning_lists()
    assert digest.search("8.8.8.8")
    assert not (blocker / "cache").exists()


def test_digest_of_own_lists() -> None:
    d = WarningListDigest.build([("b-list", ["x.example", "dup.example"]),
                                 ("a-list", ["dup.example", "dup.example", "1.2.3.4"])])
    assert d.search("dup.example") == ["a-list", "b-list"]
    assert d.search("1.2.3.4") == ["a-list"] and d.search("X.example") == []


def test_actor_kb_without_pymispgalaxies_objects_equals_its_api(
        monkeypatch: pytest.MonkeyPatch) -> None:
    fast = ActorKB(load_clusters())
    monkeypatch.setattr(actors, "package_dir", lambda name: None)  # forces Clusters()
    slow = ActorKB(load_clusters())
    for q in ("Hidden Cobra", "Fancy Bear", "G0007", "ZINC", "Turla", "sandworm team",
              "APT", "Kimsuky"):
        assert fast.resolve(q).to_dict() == slow.resolve(q).to_dict(), q


def test_actor_and_iocs_do_not_load_the_heavy_apis(cache: Path) -> None:
    """``kinship actor``, IOC filtering and MISP events never import pymispgalaxies' or
    pymispwarninglists' modules (they pull jsonschema, whose grammars take about a second, and
    build ~100 clusters / 2.5 M-entry sets: seconds)."""
    code = (
        "import json, sys\n"
        "from kinship.intel.actors import resolve_actor\n"
        "from kinship.intel.iocs import iocs_from_text\n"
        "p = resolve_actor('Hidden Cobra')\n"
        "r = iocs_from_text('dns 8.8.8.8')\n"
        "from kinship.intel.datacache import import_pymisp\n"
        "e = import_pymisp().MISPEvent()\n"
        "e.add_attribute('domain', 'update.example-cdn.net')\n"
        "assert 'update.example-cdn.net' in e.to_json()\n"
        "print(json.dumps({'actor': p.name, 'filtered': [i.value for i in r.filtered],\n"
        "    'loaded': sorted(m for m in sys.modules if m.startswith(\n"
        "        ('pymispgalaxies', 'pymispwarninglists', 'jsonschema')))}))\n"
    )
    env = {**os.environ, "KINSHIP_CACHE": str(cache)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, timeout=300, check=True).stdout
    doc = json.loads(out)
    assert doc == {"actor": "Lazarus Group", "filtered": ["8.8.8.8"], "loaded": []}


def test_cache_keeps_a_few_versions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two environments with different package versions share the user cache without
    rebuilding each other's folder on every call; abandoned build folders are removed."""
    from kinship.intel.datacache import MAX_KEPT_VERSIONS, cached_folder

    monkeypatch.setenv("KINSHIP_CACHE", str(tmp_path))
    built: list[str] = []

    def build(key: str) -> Callable[[Path], None]:
        def make(folder: Path) -> None:
            built.append(key)
            (folder / "data.txt").write_text(key)
        return make

    stale = tmp_path / ".thing-abandoned"
    stale.mkdir()
    os.utime(stale, (1_000_000_000, 1_000_000_000))
    for i, key in enumerate(["k1", "k2", "k3", "k4"]):
        folder = cached_folder("thing", key, build(key))
        assert folder is not None and (folder / "data.txt").read_text() == key
        os.utime(folder, (2_000_000_000 + i, 2_000_000_000 + i))
    assert cached_folder("thing", "k4", build("again")) == tmp_path / "thing-k4"
    assert built == ["k1", "k2", "k3", "k4"]  # k4 read back, not rebuilt
    kept = sorted(p.name for p in tmp_path.glob("thing-*"))
    assert len(kept) == MAX_KEPT_VERSIONS and "thing-k4" in kept and "thing-k1" not in kept
    assert not stale.exists()
