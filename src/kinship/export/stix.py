"""STIX 2.1 bundle (stix2 library) from an :class:`IntelReport`.

Objects: malware (the family, or the sample when no family is known), intrusion-set (the
actor), attack-pattern (each technique, with its MITRE external reference), indicator (each
YARA rule with ``pattern_type: yara``, each IOC and each sample hash with a STIX pattern),
relationships (malware uses attack-pattern, intrusion-set uses malware, indicator indicates
malware) and one report that refers to everything.
"""

from __future__ import annotations

import logging
from typing import Any

from kinship.intel.iocs import IOC
from kinship.report.build import IntelReport

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


def to_bundle(report: IntelReport) -> Any:
    """A ``stix2.Bundle``; ``.serialize()`` gives the JSON."""
    import stix2

    created = report.created
    objects: list[Any] = []
    name = report.family or (report.samples[0].name if report.samples else "unknown sample")
    malware = stix2.Malware(name=name, is_family=report.family is not None,
                            description=f"Analysed by kinship: {len(report.samples)} sample(s)",
                            created=created, modified=created)
    objects.append(malware)
    if report.actor is not None:
        refs = [{"source_name": "mitre-attack", "external_id": report.actor.attack_id,
                 "url": f"https://attack.mitre.org/groups/{report.actor.attack_id}"}] \
            if report.actor.attack_id else []
        iset = stix2.IntrusionSet(name=report.actor.name,
                                  aliases=report.actor.aliases or None,
                                  external_references=refs or None,
                                  created=created, modified=created)
        objects += [iset, stix2.Relationship(iset, "uses", malware, created=created,
                                             modified=created)]
    for t in report.techniques:
        ap = stix2.AttackPattern(
            name=t["name"] or t["id"], created=created, modified=created,
            external_references=[{
                "source_name": "mitre-attack", "external_id": t["id"],
                "url": f"https://attack.mitre.org/techniques/{t['id'].replace('.', '/')}"}],
        )
        where = "; ".join(sorted({f"{e['sample']} function 0x{e['function_va']:x}"
                                  for e in t["evidence"] if e["function_va"] is not None}))
        objects += [ap, stix2.Relationship(malware, "uses", ap, created=created,
                                           modified=created,
                                           description=f"capa rules {', '.join(t['rules'])}: "
                                                       f"{where}")]
    indicators: list[Any] = []
    for rule in report.yara_rules:
        v = rule.get("validation") or {}
        indicators.append(stix2.Indicator(
            name=rule["name"], pattern=rule["text"], pattern_type="yara",
            valid_from=created, created=created, modified=created, indicator_types=[
                "malicious-activity"],
            description=f"kinship YARA rule, validated TPR {v.get('tpr')} FPR {v.get('fpr')}"))
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
    for ind in indicators:
        objects += [ind, stix2.Relationship(ind, "indicates", malware, created=created,
                                            modified=created)]
    objects.append(stix2.Report(
        name=report.title, published=created, report_types=["malware"],
        object_refs=[o.id for o in objects], created=created, modified=created,
        description="Tactical intelligence report generated by kinship"))
    return stix2.Bundle(objects=objects, allow_custom=False)
