"""MISP event (pymisp ``MISPEvent``, built offline) from an :class:`IntelReport`.

One ``file`` object per sample (hashes, name, size), one attribute per IOC with its MISP type,
one ``yara`` / ``sigma`` attribute per rule, galaxy tags for the actor (threat-actor) and for
each technique (mitre-attack-pattern), and an ``analysis`` tag.
``MISPEvent().load(event.to_json())`` gives the same event back.
"""

from __future__ import annotations

import logging
from typing import Any

from kinship.render.verdict import ATTRIBUTED, verdict_view
from kinship.report.model import IntelReport

logger = logging.getLogger(__name__)

# kinship IOC type -> MISP attribute type (category comes from pymisp's describeTypes default)
MISP_TYPES = {
    "url": "url", "domain": "domain", "ipv4": "ip-dst", "ipv6": "ip-dst", "email": "email-src",
    "md5": "md5", "sha1": "sha1", "sha256": "sha256", "file_path": "filename",
    "registry_key": "regkey", "mutex": "mutex", "user_agent": "user-agent", "pdb_path": "pdb",
    "cve": "vulnerability",
}


def to_misp_event(report: IntelReport) -> Any:
    from kinship.intel.datacache import import_pymisp

    pymisp = import_pymisp()  # without its galaxy/warning-list helpers: 1 s less
    MISPEvent, MISPObject = pymisp.MISPEvent, pymisp.MISPObject

    event = MISPEvent()
    event.info = f"kinship: {report.title}"
    event.distribution = 0  # your organisation only, until an analyst decides otherwise
    event.threat_level_id = 2
    event.analysis = 1
    event.set_date(report.created[:10])
    event.add_tag("tlp:amber")
    event.add_tag('kinship:generated="true"')
    if report.actor is not None:
        event.add_tag(f'misp-galaxy:threat-actor="{report.actor.name}"')
        if report.actor.attack_id:
            event.add_tag(f'misp-galaxy:mitre-intrusion-set="{report.actor.attack_name} - '
                          f'{report.actor.attack_id}"')
    for t in report.techniques:
        if t["name"]:
            short = t["name"].split(": ", 1)[-1]
            event.add_tag(f'misp-galaxy:mitre-attack-pattern="{short} - {t["id"]}"')
    for s in report.samples:
        obj = MISPObject("file", standalone=False)
        obj.add_attribute("filename", value=s.name)
        obj.add_attribute("md5", value=s.md5)
        obj.add_attribute("sha1", value=s.sha1)
        obj.add_attribute("sha256", value=s.sha256)
        obj.add_attribute("size-in-bytes", value=s.size)
        view = verdict_view(s.verdict)
        if view.status == ATTRIBUTED and view.family:
            obj.comment = f"kinship verdict: {view.family}" + (
                f", confidence {view.confidence_text}" if view.confidence_text else "")
        elif s.verdict is not None:
            obj.comment = f"kinship verdict: {view.status}" + (
                f" (leading candidate {view.candidate})" if view.candidate else "")
        event.add_object(obj)
    for ioc in report.iocs:
        mtype = MISP_TYPES.get(ioc.type)
        if mtype is None:
            continue
        src = ioc.sources[0] if ioc.sources else None
        comment = (f"{src.kind} in {src.sample[:16]} offset 0x{src.offset:x}"
                   if src is not None and src.offset is not None else "")
        event.add_attribute(mtype, ioc.value, comment=comment, to_ids=mtype not in (
            "filename", "pdb", "user-agent"))
    for rule in report.yara_rules:
        event.add_attribute("yara", rule["text"].strip(), comment=f"kinship rule {rule['name']}",
                            to_ids=True)
    for rule in report.sigma_rules:
        v = rule.get("validation") or {}
        event.add_attribute("sigma", rule["text"].strip(), to_ids=True,
                            comment=f"kinship Sigma rule {rule['id']}, validated on the store's "
                                    f"strings: {v.get('tp')} family samples, {v.get('fp')} others")
    return event
