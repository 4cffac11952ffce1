"""``kinship report --lang ja`` is Japanese throughout: every label, heading, table header,
tactic and verdict word; only proper names, ATT&CK technique names and data stay as they are
(issue #9 section 5)."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from kinship.intel.attack import TACTIC_NAMES
from kinship.report.build import TEMPLATES, ReportOptions, render
from kinship.report.model import IntelReport

WORD = re.compile(r"(?<![0-9A-Za-z_])[A-Za-z]{2,}(?![0-9A-Za-z_])")  # words, not hex


class _Text(HTMLParser):
    """Text a reader sees, outside code, listings and links (which hold data)."""

    SKIP = frozenset({"code", "pre", "a", "style", "script", "svg"})

    def __init__(self) -> None:
        super().__init__()
        self.depth = 0
        self.parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.SKIP:
            self.depth += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIP:
            self.depth -= 1

    def handle_data(self, data: str) -> None:
        if self.depth == 0:
            self.parts.append(data)


def _values(x: Any, out: set[str]) -> set[str]:
    """Words of every string value (not key) of the report's data."""
    if isinstance(x, dict):
        for v in x.values():
            _values(v, out)
    elif isinstance(x, list | tuple):
        for v in x:
            _values(v, out)
    elif isinstance(x, str):
        out.update(WORD.findall(x))
    return out


def _strings(lang: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((TEMPLATES / f"strings_{lang}.json").read_text(
        encoding="utf-8"))
    return data


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = str(v)
    return out


@pytest.fixture(scope="module")
def ja_report(bins: dict[str, Path], shared_dir: Path | None,
              tmp_path_factory: pytest.TempPathFactory) -> IntelReport:
    from kinship.api import Kinship
    from kinship.pipeline import Labels

    rules = shared_dir / "data/capa-rules" if shared_dir is not None else None
    tmp = tmp_path_factory.mktemp("ja")
    with Kinship(tmp / "k.db") as k:
        k.add([bins["netsh_x86.exe"]], Labels(family="netsh", actor="APT38",
                                              source="Vendor 2016", first_seen="2016-03"))
        k.add([bins["netsh_elf64"]], Labels(family="netsh", actor="APT38"))
        k.add([bins["other_x86.exe"]], Labels(family="other"))
        return k.report([bins["netsh_x64.exe"]], ReportOptions(
            capa_rules=rules if rules is not None and rules.is_dir() else None, lang="ja"))


def test_strings_files_have_the_same_keys() -> None:
    en, ja = _flat(_strings("en")), _flat(_strings("ja"))
    assert en.keys() == ja.keys()
    # a label left in English would be equal in both files (proper names are allowed)
    same = {k for k in en if en[k] == ja[k]}
    assert same <= {"no_confidence"} | {k for k in en if k.startswith(("ioc_type.",))}, same


def test_japanese_report_has_no_english_labels(ja_report: IntelReport) -> None:
    html = render(ja_report, "html")
    md = render(ja_report, "md")
    d = ja_report.to_dict()
    allowed = _values(d, set())
    # proper names the Japanese strings keep on purpose (capa, MISP, YARA, URLs ...)
    allowed |= _values(_strings("ja"), set())
    allowed |= {"SHA", "VA", "JSON", "STIX"}  # hash name, virtual address, format names
    parser = _Text()
    parser.feed(html)
    seen = " ".join(parser.parts)
    md_text = re.sub(r"```.*?```", " ", md, flags=re.S)
    md_text = re.sub(r"`[^`]*`|<br>", " ", md_text)
    for name, text in (("html", seen), ("md", md_text)):
        english = sorted(set(WORD.findall(text)) - allowed)
        assert not english, (name, english)
    # every English label of the en strings is absent (the check above could miss a label
    # whose words happen to be data)
    en, ja = _flat(_strings("en")), _flat(_strings("ja"))
    for k, v in en.items():
        if v != ja[k] and len(v) > 3 and " " in v:
            assert v not in html and v not in md, k


def test_japanese_tactics_and_verdict_words(ja_report: IntelReport) -> None:
    html = render(ja_report, "html")
    parser = _Text()
    parser.feed(html)
    seen = " ".join(parser.parts)  # Sigma rules (in <pre>) keep their attack.* tags
    assert "防御回避" in seen and "Defense Evasion" not in seen
    assert "defense-evasion" not in seen
    assert "T1562.004" in html  # technique ids and ATT&CK names stay
    assert "帰属判定あり" in html and "確信度" in html
    from kinship.render.verdict import reason_text

    reason = (ja_report.samples[0].verdict or {}).get("reason") or ""
    assert reason and reason not in seen and reason_text(reason, "ja") in seen
    assert "参照検体との関連" in html and "初確認日" in html
    assert "ルールセット" in html and "使用" in html
    assert all(v["ja"] and v["ja"] != v["en"] for v in TACTIC_NAMES.values())
    assert len(TACTIC_NAMES) == 14


def _engine_reasons() -> list[str]:
    """One reason of each kind, written by the engine itself (kinship.match.verdict)."""
    from kinship.match.config import MatchConfig
    from kinship.match.result import FamilyScore
    from kinship.match.verdict import decide

    cfg = MatchConfig()
    hi = cfg.unknown_threshold + 0.3

    def fam(name: str, score: float, n: int, instr: int, strings: int,
            actor: str | None = None) -> FamilyScore:
        return FamilyScore(name, actor, score, n, 0.5, n_strings_shared=strings,
                           matched_instructions=instr)

    cases = [
        [],
        [fam("netsh", cfg.unknown_threshold / 2, 3, 100, 0)],
        [fam("netsh", hi, 30, 3000, 5), fam("other", hi, 30, 3000, 5)],
        [fam("netsh", hi, 1, 12, 0)],
        [fam("netsh", hi, 40, 4000, 7)],
        [fam("netsh", hi, 40, 4000, 0)],
        [fam("netsh", hi, 40, 4000, 0, "Lazarus Group"),
         fam("other", hi * 0.99, 40, 4000, 0, "Lazarus Group")],
    ]
    return [decide(c, cfg).reason for c in cases]


def test_engine_reasons_read_in_japanese() -> None:
    from kinship.render.verdict import reason_text

    reasons = _engine_reasons()
    assert len(set(reasons)) == len(reasons)  # seven different sentences
    for reason in reasons:
        ja = reason_text(reason, "ja")
        assert ja != reason, reason  # the engine's wording changed: update _REASONS_JA
        words = set(WORD.findall(ja)) - {"netsh", "other"}
        assert not words, (reason, ja)
        assert reason_text(reason, "en") == reason
