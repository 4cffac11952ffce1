"""The facade owns the workflows (issue #11, item 4): bytes in, the intel/rules/report and
artifact workflows as :class:`kinship.api.Kinship` methods, a ``MatchConfig`` kept."""

from __future__ import annotations

from pathlib import Path

import pytest

from kinship.api import Kinship, open_attributor
from kinship.artifacts.model import ArtifactResult
from kinship.exceptions import NotFoundError
from kinship.match.config import MatchConfig
from kinship.pipeline import Labels


@pytest.fixture(scope="module")
def store(bins: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("facade") / "k.db"
    with Kinship(db) as k:
        k.add([bins["netsh_x86.exe"]], Labels(family="netsh", actor="APT38"))
        k.add([bins["other_x86.exe"]], Labels(family="other"))
    return db


def test_match_bytes_is_match_of_the_file(store: Path, bins: dict[str, Path]) -> None:
    path = bins["netsh_x64.exe"]
    with Kinship(store) as k:
        from_file = k.match(path)
        from_bytes = k.match_bytes(path.read_bytes(), "netsh_x64.exe")
    assert from_bytes.verdict == from_file.verdict
    assert from_bytes.families == from_file.families
    assert from_bytes.function_matches == from_file.function_matches


def test_attributor_reads_bytes_without_a_temporary_file(store: Path, bins: dict[str, Path],
                                                         tmp_path: Path) -> None:
    data = bins["netsh_x64.exe"].read_bytes()
    with open_attributor(store) as attribute:
        att = attribute("attachment.exe", data)
    assert att.status == "matched" and att.family == "netsh"
    with open_attributor(tmp_path / "none.db") as attribute:
        assert attribute("a.exe", data).status == "skipped"
    assert not (tmp_path / "none.db").exists()


def test_match_config_is_kept(tmp_path: Path) -> None:
    cfg = MatchConfig(min_instructions=12)
    with Kinship(tmp_path / "k.db", match_config=cfg) as k:
        assert k.match_config is cfg
    with Kinship(tmp_path / "k.db") as k:
        assert k.match_config == MatchConfig()


def test_intel_workflows(store: Path, bins: dict[str, Path]) -> None:
    with Kinship(store) as k:
        sample, caps = k.capabilities(bins["netsh_x64.exe"])
        assert caps.n_functions == sample.record.n_functions
        _, iocs = k.iocs(bins["netsh_x64.exe"])
        assert iocs.iocs or iocs.filtered
        labels = k.stored_labels([sample.record.sha256, _sha(k, "netsh")])
        assert labels[_sha(k, "netsh")]["family"] == "netsh"
        assert sample.record.sha256 not in labels  # the x64 build is not stored
        with pytest.raises(NotFoundError):
            k.sigma_rules("no-such-family")
        with pytest.raises(NotFoundError):
            k.yara_rule("no-such-family")


def _sha(k: Kinship, family: str) -> str:
    return next(r.sha256 for r in k.store.samples() if r.family == family)


def _eml(path: Path, pe: bytes) -> Path:
    from email.message import EmailMessage

    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "a@example.com", "b@example.com", "invoice"
    msg.set_content("see attached")
    msg.add_attachment(pe, maintype="application", subtype="octet-stream",
                       filename="invoice.exe")
    path.write_bytes(bytes(msg))
    return path


def test_workflow_documents_carry_the_store_meta(store: Path, bins: dict[str, Path],
                                                 tmp_path: Path) -> None:
    """capabilities, report and artifact documents made by the facade say which store made
    them (meta: store id, kinship version, feature parameters); store-less ones say none."""
    from kinship.api import capabilities, report
    from kinship.pipeline import feature_params
    from kinship.report.build import ReportOptions

    exe = bins["netsh_x64.exe"]
    mail = _eml(tmp_path / "invoice.eml", exe.read_bytes())
    opts = ReportOptions(detection_rules=False)
    with Kinship(store) as k:
        store_id = k.store.store_id()
        docs = {"capabilities": k.capabilities(exe)[1], "report": k.report([exe], opts),
                "artifact": k.artifact(mail)}
    for name, doc in docs.items():
        meta = doc.meta
        assert meta is not None, name
        assert meta.store_id == store_id and meta.feature_params == feature_params(), name
        assert meta.kinship_version and meta.query_time is not None, name
        assert meta.store_generation >= 1 and meta.seconds >= 0.0, name
        assert doc.to_dict()["meta"]["store_id"] == store_id, name
    art = docs["artifact"]
    assert isinstance(art, ArtifactResult)
    assert art.children and all(c.meta is None for c in art.children)  # the top one only
    assert art.children[0].attribution is not None
    assert art.children[0].attribution.status == "matched"
    assert capabilities(exe)[1].meta is None
    assert report([exe], opts).meta is None
