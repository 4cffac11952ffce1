"""STIX 2.1 bundle (stix2 library) from an :class:`IntelReport`.

Objects: malware (the family, or the sample when no family is known), intrusion-set (the
actor), attack-pattern (each technique, with its MITRE external reference), indicator (each
YARA rule with ``pattern_type: yara``, each IOC and each sample hash with a STIX pattern),
relationships (malware uses attack-pattern, intrusion-set uses malware, indicator indicates
malware) and one report that refers to everything.

The attribution itself is drawn as well::

    file (analysed) <-sample_refs- malware (instance) --variant-of--> malware (family)
                                        |  confidence, evidence          ^
                                        +--variant-of/related-to--> malware (reference
                                           shared functions, score       instance, first_seen,
                                                                         source) -sample_refs-> file

``variant-of`` when the verdict is attributed (the relationship carries STIX's ``confidence``,
0-100, and the evidence in its description); ``related-to`` without a confidence for a weak or
unknown verdict (the reason in the description).
"""

from __future__ import annotations

import logging
from typing import Any

from kinship.intel.iocs import IOC
from kinship.render.verdict import ATTRIBUTED, verdict_view
from kinship.report.detection import MAX_REFERENCES
from kinship.report.model import IntelReport, SampleIntel

logger = logging.getLogger(__name__)


def _quote(v: str) -> str:
    return v.replace("\\", "\\\\").replace("'", "\\'")


def _basename(path: str) -> str:
    return path.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]


def ioc_pattern(ioc: IOC) -> str | None:
    """A STIX pattern for ``ioc``, or None for types STIX has no simple object for."""
    v = _quote(ioc.value)
    return {
        "url": f"[url:value = '{v}']",
        "domain": f"[domain-name:value = '{v}']",
        "ipv4": f"[ipv4-addr:value = '{v}']",
        "ipv6": f"[ipv6-addr:value = '{v}']",
        "email": f"[email-addr:value = '{v}']",
        "md5": f"[file:hashes.MD5 = '{v}']",
        "sha1": f"[file:hashes.'SHA-1' = '{v}']",
        "sha256": f"[file:hashes.'SHA-256' = '{v}']",
        "registry_key": f"[windows-registry-key:key = '{v}']",
        "mutex": f"[mutex:name = '{v}']",
        "file_path": f"[file:name = '{_quote(_basename(ioc.value))}']",
        "pdb_path": f"[file:name = '{_quote(_basename(ioc.value))}']",
    }.get(ioc.type)


def _first_seen(value: str | None) -> str | None:
    """A stored first-seen label ("2016", "2016-03", "2016-03-05") as a STIX timestamp."""
    if not value:
        return None
    parts = value.strip()[:10].split("-")
    try:
        y, m, d = (int(parts[0]), int(parts[1]) if len(parts) > 1 else 1,
                   int(parts[2]) if len(parts) > 2 else 1)
        return f"{y:04d}-{m:02d}-{d:02d}T00:00:00Z" if 1 <= m <= 12 and 1 <= d <= 31 else None
    except ValueError:
        return None


def _stix_confidence(value: float) -> int:
    """STIX's 0-100 confidence; 100 only for certainty (0.9999 is not certain)."""
    return 100 if value >= 1.0 else max(0, min(99, round(100 * value)))


def _file(stix2: Any, sha256: str, name: str, md5: str | None = None,
          sha1: str | None = None, size: int | None = None) -> Any:
    hashes = {"SHA-256": sha256}
    if md5:
        hashes["MD5"] = md5
    if sha1:
        hashes["SHA-1"] = sha1
    return stix2.File(hashes=hashes, name=name, size=size)


def _attribution(stix2: Any, s: SampleIntel, family: Any, families: dict[str, Any],
                 created: str) -> list[Any]:
    """The analysed sample as a file + malware instance, linked to its family and to the
    reference samples it shares code with (module docstring)."""
    v = verdict_view(s.verdict)
    f = _file(stix2, s.sha256, s.name, s.md5, s.sha1, s.size)
    inst = stix2.Malware(name=s.name, is_family=False, sample_refs=[f.id], created=created,
                         modified=created, description=f"Sample analysed by kinship "
                         f"({s.format}/{s.arch}, {s.n_functions} functions)")
    out: list[Any] = [f, inst]
    score = f"score {v.score:.3f}" if v.score is not None else "no score"
    if v.status == ATTRIBUTED and v.family and v.confidence is not None:
        conf = v.confidence
        out.append(stix2.Relationship(
            inst, "variant-of", families.get(v.family, family), created=created,
            modified=created, confidence=_stix_confidence(conf),
            description=f"kinship attribution to {v.family}: confidence {v.confidence_text}, "
                        f"{score}. "
                        f"{v.reason}".strip()))
    elif v.candidate and v.candidate in families:
        out.append(stix2.Relationship(
            inst, "related-to", families[v.candidate], created=created, modified=created,
            description=f"kinship: {v.status}, not attributed ({score}); leading candidate "
                        f"{v.candidate}. {v.reason}".strip()))
    for ref in s.references[:MAX_REFERENCES]:
        rf = _file(stix2, ref["sha256"], ref["name"])
        labels = ", ".join(f"{k} {ref[k]}" for k in ("family", "actor", "source", "first_seen",
                                                     "version") if ref.get(k))
        rm = stix2.Malware(name=ref["name"], is_family=False, sample_refs=[rf.id],
                           first_seen=_first_seen(ref.get("first_seen")), created=created,
                           modified=created,
                           description=f"Reference sample in the kinship store ({labels})")
        same = v.status == ATTRIBUTED and ref.get("family") == v.family
        evidence = (f"code reuse: {ref['n_functions_matched']} shared functions, score "
                    f"{ref['score']:.3f} (kinship)")
        kw: dict[str, Any] = {}
        if same and v.confidence is not None:
            kw["confidence"] = _stix_confidence(v.confidence)
            evidence += f"; verdict {v.family}, confidence {v.confidence_text}"
        else:
            evidence += f"; verdict {v.status}"
        out += [rf, rm, stix2.Relationship(inst, "variant-of" if same else "related-to", rm,
                                           created=created, modified=created,
                                           description=evidence, **kw)]
        fam = families.get(ref.get("family") or "")
        if fam is not None:
            out.append(stix2.Relationship(rm, "variant-of", fam, created=created,
                                          modified=created,
                                          description="labelled so in the kinship store"))
    return out


def to_bundle(report: IntelReport) -> Any:
    """A ``stix2.Bundle``; ``.serialize()`` gives the JSON."""
    import stix2

    created = report.created
    name = report.family or (report.samples[0].name if report.samples else "unknown sample")
    malware = stix2.Malware(name=name, is_family=report.family is not None,
                            description=f"Analysed by kinship: {len(report.samples)} sample(s)",
                            created=created, modified=created)
    families = _families(stix2, report, malware, created)
    objects: list[Any] = [malware, *(f for f in families.values() if f is not malware)]
    for si in report.samples:
        objects += _attribution(stix2, si, malware, families, created)
    objects += _actor(stix2, report, malware, created)
    objects += _techniques(stix2, report, malware, created)
    for ind in _indicators(stix2, report, created):
        objects += [ind, stix2.Relationship(ind, "indicates", malware, created=created,
                                            modified=created)]
    objects.append(stix2.Report(
        name=report.title, published=created, report_types=["malware"],
        object_refs=[o.id for o in objects], created=created, modified=created,
        description="Tactical intelligence report generated by kinship"))
    return stix2.Bundle(objects=objects, allow_custom=False)


def _families(stix2: Any, report: IntelReport, malware: Any, created: str) -> dict[str, Any]:
    """Family SDOs named by verdicts, candidates and references, by name (the report's own
    family, ``malware``, first; the others in the order they are first named)."""
    families: dict[str, Any] = {report.family: malware} if report.family else {}
    for si in report.samples:
        view = verdict_view(si.verdict)
        for fam in [view.family, view.candidate] + [r.get("family") for r in si.references]:
            if fam and fam not in families:
                families[fam] = stix2.Malware(name=fam, is_family=True, created=created,
                                              modified=created,
                                              description="Family label in the kinship store")
    return families


def _actor(stix2: Any, report: IntelReport, malware: Any, created: str) -> list[Any]:
    """The actor as an intrusion-set that uses ``malware`` (nothing when none is known)."""
    if report.actor is None:
        return []
    refs = [{"source_name": "mitre-attack", "external_id": report.actor.attack_id,
             "url": f"https://attack.mitre.org/groups/{report.actor.attack_id}"}] \
        if report.actor.attack_id else []
    iset = stix2.IntrusionSet(name=report.actor.name,
                              aliases=report.actor.aliases or None,
                              external_references=refs or None,
                              created=created, modified=created)
    return [iset, stix2.Relationship(iset, "uses", malware, created=created, modified=created)]


def _techniques(stix2: Any, report: IntelReport, malware: Any, created: str) -> list[Any]:
    """Each ATT&CK technique as an attack-pattern that ``malware`` uses (with where)."""
    out: list[Any] = []
    for t in report.techniques:
        ap = stix2.AttackPattern(
            name=t["name"] or t["id"], created=created, modified=created,
            external_references=[{
                "source_name": "mitre-attack", "external_id": t["id"],
                "url": f"https://attack.mitre.org/techniques/{t['id'].replace('.', '/')}"}],
        )
        where = "; ".join(sorted({f"{e['sample']} function 0x{e['function_va']:x}"
                                  for e in t["evidence"] if e["function_va"] is not None}))
        out += [ap, stix2.Relationship(malware, "uses", ap, created=created,
                                       modified=created,
                                       description=f"rules {', '.join(t['rules'])}: "
                                                   f"{where}")]
    return out


def _indicators(stix2: Any, report: IntelReport, created: str) -> list[Any]:
    """Indicators: each YARA and Sigma rule, each sample hash and each IOC STIX can express."""
    indicators: list[Any] = []
    for rule in report.yara_rules:
        v = rule.get("validation") or {}
        indicators.append(stix2.Indicator(
            name=rule["name"], pattern=rule["text"], pattern_type="yara",
            valid_from=created, created=created, modified=created, indicator_types=[
                "malicious-activity"],
            description=f"kinship YARA rule, validated TPR {v.get('tpr')} FPR {v.get('fpr')}"))
    for rule in report.sigma_rules:
        v = rule.get("validation") or {}
        indicators.append(stix2.Indicator(
            name=f"Sigma {rule['id']}", pattern=rule["text"], pattern_type="sigma",
            valid_from=created, created=created, modified=created,
            indicator_types=["malicious-activity"],
            description=f"kinship Sigma rule ({rule['category']}), validated on the store's "
                        f"strings: {v.get('tp')} family samples, {v.get('fp')} others"))
    for s in report.samples:
        indicators.append(stix2.Indicator(
            name=s.name, pattern=f"[file:hashes.'SHA-256' = '{s.sha256}']", pattern_type="stix",
            valid_from=created, created=created, modified=created,
            indicator_types=["malicious-activity"]))
    for ioc in report.iocs:
        pattern = ioc_pattern(ioc)
        if pattern is None:
            continue
        src = ioc.sources[0] if ioc.sources else None
        where = (f"{src.kind} in {src.sample[:16]} at offset 0x{src.offset:x}"
                 if src is not None and src.offset is not None else "")
        indicators.append(stix2.Indicator(
            name=f"{ioc.type}: {ioc.defanged}", pattern=pattern, pattern_type="stix",
            valid_from=created, created=created, modified=created,
            indicator_types=["malicious-activity"], description=where or None))
    return indicators
