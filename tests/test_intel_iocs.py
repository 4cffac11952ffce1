"""IOC extraction: defanged and plain, warning-list filtering, sources cited."""

from __future__ import annotations

from pathlib import Path

from kinship.intel.iocs import defang, iocs_from_sample, iocs_from_text, refang
from kinship.pipeline import SampleInput, analyse

TEXT = """The implant beacons to hxxp://update[.]example-cdn[.]net/gate.php and 203.0.113[.]77.
It resolves names through 8.8.8.8 and checks google.com for connectivity.
Operator mail: ops[@]example-mail[.]org. Persistence in
HKEY_CURRENT_USER\\Software\\Microsoft\\Windows\\CurrentVersion\\Run\\WinUpdate,
mutex Global\\WinUpdateMutex42, PDB C:\\build\\agent\\Release\\agent.pdb
"""


def test_defang_roundtrip() -> None:
    url = "http://update.example-cdn.net/gate.php"
    assert defang(url) == "hxxp://update[.]example-cdn[.]net/gate.php"
    assert refang(defang(url)) == url
    assert refang("evil[dot]example(.)com") == "evil.example.com"


def test_text_iocs_defanged_and_filtered() -> None:
    res = iocs_from_text(TEXT, source="report.txt")
    got = {(i.type, i.value) for i in res.iocs}
    assert ("url", "http://update.example-cdn.net/gate.php") in got
    assert ("domain", "update.example-cdn.net") in got
    assert ("email", "ops@example-mail.org") in got
    assert any(t == "registry_key" and "CurrentVersion\\Run" in v for t, v in got)
    assert ("mutex", "Global\\WinUpdateMutex42") in got
    assert any(t == "pdb_path" and v.endswith("agent.pdb") for t, v in got)
    filtered = {i.value: i.warning_lists for i in res.filtered}
    assert filtered.get("8.8.8.8")
    assert "google.com" in filtered
    assert all(i.sources and i.sources[0].sample == "report.txt" for i in res.iocs)


def test_plain_text_same_as_defanged() -> None:
    plain = iocs_from_text("beacon http://update.example-cdn.net/gate.php")
    fanged = iocs_from_text("beacon hxxp://update[.]example-cdn[.]net/gate.php")
    assert {(i.type, i.value) for i in plain.iocs} == {(i.type, i.value) for i in fanged.iocs}


def test_no_filter_keeps_benign() -> None:
    res = iocs_from_text("dns 8.8.8.8", filter_benign=False)
    assert [i.value for i in res.iocs] == ["8.8.8.8"] and not res.filtered


def test_sample_iocs_cite_offsets(bins: dict[str, Path]) -> None:
    a = analyse(SampleInput(name="x", path=bins["netsh_x64.exe"]), keep=True)
    assert a.binary is not None
    res = iocs_from_sample(a.binary, a.disassembly)
    for ioc in res.iocs + res.filtered:
        for src in ioc.sources:
            if src.kind == "string":
                assert src.offset is not None
                assert ioc.value in src.context or src.context in a.binary.data.decode(
                    "latin-1")
