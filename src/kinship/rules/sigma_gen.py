"""Per-family Sigma rules from the command lines, registry keys and file paths in the store.

    family's stored strings ─> log-like? (LOG_KINDS: command line | registry key | file path)
        -> skeleton: the tokens every run shows (``netsh`` + ``firewall add portopening``;
           format specifiers, numbers, ports and user paths are cut)
        -> keep skeletons that >= min_family_share of the members have, ranked by how many
           members have them and how few other samples have the same string (store postings)
        -> one Sigma rule per skeleton (uuid5 id of family + skeleton: stable across runs)
        -> validate on events synthesised from EVERY stored sample (sigma_validate):
           pySigma parses + lints it, its SQL fires on the family (TP) and on nobody else
           (FP = 0), or the rule is dropped

Validation is against the corpus's strings, not against real endpoint logs
(see :mod:`kinship.rules.sigma_validate`).
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from kinship.document import Document
from kinship.rules.sigma_validate import (
    CATEGORY_FIELD,
    LogEvent,
    SigmaValidation,
    event_table,
    validate_rule,
)
from kinship.store.base import Store

logger = logging.getLogger(__name__)

# Namespace of the rules' uuid5 ids (uuid5(NAMESPACE_URL, "https://kinship/sigma")): the
# same family and skeleton give the same id on every machine and run.
SIGMA_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://kinship/sigma")
# Longest string considered, characters: command lines of real implants fit in 1 KiB; longer
# ones are scripts or blobs that no process_creation log shows verbatim.
MAX_LOG_STRING_CHARS = 1024
# Samples cited in a rule's description (the rest are counted).
MAX_EVIDENCE_SAMPLES = 10


@dataclass
class SigmaConfig:
    """Knobs of Sigma rule generation."""

    # Share of the family's samples that must hold a skeleton for it to become a rule (0..1).
    # 0.5 (a choice, not measured on a corpus): a string half the family shares is a family
    # trait rather than one build's. The fixture netsh family's schtasks line (1 of 4 members,
    # the v2 build only) stays out at 0.5 and comes in with 0.25.
    min_family_share: float = 0.5
    # Rules per family (1..100), best ranked first.
    max_rules: int = 20
    # Shortest token phrase kept in a skeleton, characters (2..16): 'sc', '/f' alone say little.
    min_token_chars: int = 3
    # A skeleton needs this many characters in all (8..64): 'cmd /c' alone fires everywhere.
    min_skeleton_chars: int = 10
    # The rule date (YYYY-MM-DD); None = today.
    date: str | None = None


# --- which strings an endpoint log shows -------------------------------------------------

# Executables whose command lines implants build (LOLBins and admin tools).
_COMMANDS = ("netsh", "cmd", "powershell", "pwsh", "reg", "schtasks", "sc", "wmic", "vssadmin",
             "bcdedit", "wbadmin", "net", "net1", "rundll32", "regsvr32", "taskkill", "attrib",
             "certutil", "bitsadmin", "mshta", "wevtutil", "icacls", "takeown", "cscript",
             "wscript", "msiexec", "whoami", "systeminfo", "tasklist", "ipconfig", "nltest",
             "at", "fsutil", "auditpol")
_COMMAND_RE = re.compile(
    r"^\s*(?:\"?[a-z]:\\[^\"]*\\)?(?P<exe>" + "|".join(_COMMANDS) + r")(?:\.exe)?\"?\s+\S",
    re.IGNORECASE)
_REGISTRY_RE = re.compile(
    r"^(?:HKLM|HKCU|HKCR|HKU|HKEY_LOCAL_MACHINE|HKEY_CURRENT_USER|HKEY_CLASSES_ROOT|HKEY_USERS)"
    r"\\|^(?:Software|SYSTEM)\\(?:Microsoft|CurrentControlSet|Classes|Policies)\\",
    re.IGNORECASE)
_FILE_RE = re.compile(r"^(?:[a-z]:\\|%[a-z_]+%\\|\\\\\?\\)[^\s\"<>|]*\.[a-z0-9]{2,4}$",
                      re.IGNORECASE)
# Build-machine paths: a compiler wrote them, an endpoint never logs them.
_BUILD_PATH_RE = re.compile(r"\.(?:pdb|c|cc|cpp|h|hpp|obj|lib|rs|go)$", re.IGNORECASE)


def _command_line(text: str) -> str | None:
    return "process_creation" if _COMMAND_RE.match(text) else None


def _registry_key(text: str) -> str | None:
    return "registry_set" if _REGISTRY_RE.match(text) and " " not in text.strip() else None


def _file_path(text: str) -> str | None:
    if _FILE_RE.match(text) and not _BUILD_PATH_RE.search(text):
        return "file_event"
    return None


# Classifiers, first match wins (a command line holding a registry path is a command line).
LOG_KINDS: tuple[Callable[[str], str | None], ...] = (_command_line, _registry_key, _file_path)


def log_category(text: str) -> str | None:
    """The Sigma logsource category an endpoint log would show ``text`` under, or None."""
    t = text.strip()
    if not t or len(t) > MAX_LOG_STRING_CHARS:
        return None
    for kind in LOG_KINDS:
        category = kind(t)
        if category is not None:
            return category
    return None


def log_strings(store: Store, sha256: str, family: str | None) -> list[LogEvent]:
    """One event per log-like stored string of the sample ``sha256``."""
    out = []
    for s in store.sample_strings(sha256):
        category = log_category(s.text)
        if category is not None:
            out.append(LogEvent(sha256, family, category, s.text.strip(), s.offset))
    return out


# --- skeletons: the part of a string that every execution shows --------------------------

_FORMAT_RE = re.compile(r"%[-+ #0]*\d*(?:\.\d+)?(?:hh|h|ll|l|I64|z|j|t)?[a-zA-Z]|%[A-Za-z_]+%"
                        r"|\{\d*\}")
_VARIABLE_RE = re.compile(r"^[\d.:,x]+$|^[0-9a-f]{8,}$", re.IGNORECASE)  # numbers, IPs, hashes
_TOKEN_RE = re.compile(r"\"[^\"]*\"|'[^']*'|\S+")


def _stable(token: str) -> bool:
    return not _FORMAT_RE.search(token) and not _VARIABLE_RE.match(token)


def command_skeleton(text: str, cfg: SigmaConfig) -> tuple[str, ...]:
    """Tokens of a command line that do not change between runs, e.g.
    ``netsh firewall add portopening TCP %d "%s"`` -> ('netsh', 'firewall add portopening TCP').

    The executable comes first (without folder or ``.exe``); then runs of consecutive stable
    words become one phrase each; a quoted constant without placeholders ("WinUpdateCheck")
    is a phrase of its own. Paths, numbers and format specifiers break phrases.
    """
    m = _COMMAND_RE.match(text)
    if m is None:
        return ()
    out = [m.group("exe").lower()]
    run: list[str] = []

    def flush() -> None:
        if run and len(" ".join(run)) >= cfg.min_token_chars:
            out.append(" ".join(run))
        run.clear()

    args = re.sub(r'^(?:\.exe)?"?', "", text[m.end("exe"):], flags=re.IGNORECASE)
    for tok in _TOKEN_RE.findall(args):
        quoted = tok[:1] in "\"'"
        body = tok.strip("\"'")
        if quoted or "\\" in body or not _stable(body):
            flush()
            if quoted and body and _stable(body) and "\\" not in body:
                run.append(body)
                flush()
            continue
        run.append(body)
    flush()
    return tuple(dict.fromkeys(out))


def path_skeleton(text: str, cfg: SigmaConfig) -> tuple[str, ...]:
    """Stable segments of a registry key or file path, hive/drive/variables cut, e.g.
    ``HKCU\\Software\\Microsoft\\Windows\\CurrentVersion\\Run\\%s`` ->
    ('\\Software\\Microsoft\\Windows\\CurrentVersion\\Run\\',)."""
    segs = text.strip().split("\\")
    out: list[str] = []
    run: list[str] = []

    def flush(closed: bool) -> None:
        if run:
            phrase = "\\" + "\\".join(run) + ("\\" if closed else "")
            if len(phrase) >= cfg.min_token_chars:
                out.append(phrase)
        run.clear()

    for n, seg in enumerate(segs):
        hive_or_drive = n == 0 and (seg.upper().startswith("HK") or seg.endswith(":"))
        if not seg or hive_or_drive or not _stable(seg) or seg.lower() == "users":
            flush(True)
            continue
        if n > 0 and segs[n - 1].lower() == "users":  # a user name
            flush(True)
            continue
        run.append(seg)
    flush(False)
    return tuple(out)


def skeleton(category: str, text: str, cfg: SigmaConfig) -> tuple[str, ...]:
    """The detection tokens of a log-like string (empty when too little is stable)."""
    toks = (command_skeleton(text, cfg) if category == "process_creation"
            else path_skeleton(text, cfg))
    if sum(len(t) for t in toks) < cfg.min_skeleton_chars:
        return ()
    if category == "process_creation" and len(toks) < 2:
        return ()  # the executable alone
    return toks


# --- ATT&CK: command -> technique ---------------------------------------------------------

# (regex on the lower-cased string, technique). First match wins; a documented, deliberately
# small table (kinship's capa mapping works on code, not on strings).
TECHNIQUE_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(p), t) for p, t in (
        (r"netsh.*(?:advfirewall|firewall)", "T1562.004"),  # Disable or Modify System Firewall
        (r"netsh.*portproxy", "T1090.001"),  # Internal Proxy
        (r"schtasks.*/create", "T1053.005"),  # Scheduled Task
        (r"\bsc(?:\.exe)?\s+(?:create|config)", "T1543.003"),  # Windows Service
        (r"vssadmin.*delete|wmic.*shadowcopy.*delete|wbadmin.*delete|bcdedit.*recoveryenabled",
         "T1490"),  # Inhibit System Recovery
        (r"\bnet1?(?:\.exe)?\s+user\s+.*/add", "T1136.001"),  # Create Account: Local
        (r"\bnet1?(?:\.exe)?\s+localgroup\s+.*/add", "T1098"),  # Account Manipulation
        (r"\bnet1?(?:\.exe)?\s+(?:user|localgroup)", "T1087.001"),  # Account Discovery: Local
        (r"currentversion\\run", "T1547.001"),  # Registry Run Keys
        (r"image file execution options", "T1546.012"),  # IFEO Injection
        (r"currentcontrolset\\services", "T1543.003"),  # Windows Service
        (r"\breg(?:\.exe)?\s+(?:add|delete)", "T1112"),  # Modify Registry
        (r"rundll32", "T1218.011"),
        (r"regsvr32", "T1218.010"),
        (r"mshta", "T1218.005"),
        (r"taskkill", "T1489"),  # Service Stop
        (r"attrib.*\+h", "T1564.001"),  # Hidden Files and Directories
        (r"certutil.*(?:-decode|/decode)", "T1140"),
        (r"certutil.*urlcache", "T1105"),  # Ingress Tool Transfer
        (r"bitsadmin", "T1197"),  # BITS Jobs
        (r"wevtutil.*\bcl\b", "T1070.001"),  # Clear Windows Event Logs
        (r"wmic.*process.*call.*create", "T1047"),
        (r"powershell|pwsh", "T1059.001"),
        (r"\bcmd(?:\.exe)?\s+/[ck]", "T1059.003"),
    ))


def techniques_for(text: str) -> list[str]:
    """ATT&CK technique ids :data:`TECHNIQUE_PATTERNS` gives ``text`` (first match only)."""
    low = text.lower()
    for pattern, tid in TECHNIQUE_PATTERNS:
        if pattern.search(low):
            return [tid]
    return []


def attack_tags(tids: Sequence[str]) -> list[str]:
    """Sigma tags: the techniques' tactics (offline ATT&CK data) then the techniques."""
    from kinship.intel.attack import technique

    tactics: list[str] = []
    for tid in tids:
        tactics += [f"attack.{t}" for t in technique(tid).tactics]
    return list(dict.fromkeys(tactics + [f"attack.{t.lower()}" for t in tids]))


# --- rules --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Evidence:
    """Where a skeleton's string was found: one sample, one string, one offset."""

    sha256: str
    text: str
    offset: int | None


@dataclass
class SigmaRule(Document):
    """One generated rule, its source strings and its validation on the corpus. Not frozen:
    ``sigma_rules`` sets ``validation`` once the rule is made."""

    family: str
    id: str
    category: str
    tokens: tuple[str, ...]
    techniques: list[str]
    text: str  # the YAML
    evidence: list[Evidence]
    validation: SigmaValidation | None = None


@dataclass(frozen=True)
class SigmaResult(Document):
    """The family's kept rules and the ones validation dropped."""

    family: str
    actor: str | None
    n_members: int
    n_other_samples: int
    rules: list[SigmaRule] = field(default_factory=list)
    dropped: list[SigmaRule] = field(default_factory=list)

    def yaml(self) -> str:
        """Every kept rule, as one multi-document YAML stream."""
        return "---\n".join(r.text for r in self.rules)


_LEVEL = {True: "high", False: "medium"}  # with / without an ATT&CK technique
_FALSE_POSITIVES = {
    "process_creation": ["Administrators or software installers running the same command"],
    "registry_set": ["Legitimate software writing the same key"],
    "file_event": ["Legitimate software writing a file of the same name"],
}
_WHAT = {"process_creation": "command line", "registry_set": "registry key",
         "file_event": "file path"}


def render_rule(family: str, actor: str | None, category: str, tokens: Sequence[str],
                evidence: Sequence[Evidence], n_members: int, cfg: SigmaConfig) -> SigmaRule:
    """The Sigma YAML for one skeleton of ``family``."""
    from kinship.intel.attack import technique

    rid = str(uuid.uuid5(SIGMA_NAMESPACE, "\x00".join((family, category, *tokens))))
    tids = techniques_for(evidence[0].text)
    hosts = sorted({e.sha256 for e in evidence})
    cited = "; ".join(f"{e.sha256} @ {'-' if e.offset is None else hex(e.offset)}"
                      for e in sorted(evidence, key=lambda e: e.sha256)[:MAX_EVIDENCE_SAMPLES])
    more = len(evidence) - MAX_EVIDENCE_SAMPLES
    description = (
        f"kinship: {_WHAT[category]} of family {family}"
        + (f" (actor {actor})" if actor else "")
        + f", in {len(hosts)} of {n_members} stored samples: {evidence[0].text!r}. "
        f"Evidence (sha256 @ file offset): {cited}" + (f"; +{more} more" if more > 0 else "")
        + ". Validated against the corpus's strings, not real endpoint logs.")
    fld = CATEGORY_FIELD[category]
    modifier = "|contains|all" if len(tokens) > 1 else "|contains"
    rule: dict[str, Any] = {
        "title": f"{family} {_WHAT[category]}: {' '.join(tokens)}"[:256],
        "id": rid,
        "status": "experimental",
        "description": description,
    }
    refs = [u for u in (technique(t).url for t in tids) if u]
    if refs:
        rule["references"] = refs
    rule |= {
        "author": "kinship",
        "date": cfg.date or dt.date.today().isoformat(),
        "tags": attack_tags(tids),
        "logsource": {"category": category, "product": "windows"},
        "detection": {"selection": {fld + modifier: list(tokens) if len(tokens) > 1
                                    else tokens[0]},
                      "condition": "selection"},
        "falsepositives": _FALSE_POSITIVES[category],
        "level": _LEVEL[bool(tids)],
    }
    if not rule["tags"]:
        del rule["tags"]
    text = yaml.safe_dump(rule, sort_keys=False, allow_unicode=True, width=100)
    return SigmaRule(family, rid, category, tuple(tokens), tids, text, list(evidence))


def corpus_events(store: Store) -> list[LogEvent]:
    """One event per log-like string of EVERY stored sample (the validation corpus)."""
    out: list[LogEvent] = []
    for r in store.samples():
        out += log_strings(store, r.sha256, r.family)
    return out


def generate_family_rules(store: Store, family: str, config: SigmaConfig | None = None,
                          events: Sequence[LogEvent] | None = None) -> SigmaResult:
    """Validated Sigma rules for ``family`` from the store's strings.

    ``events`` is the validation corpus (default: :func:`corpus_events` of ``store``).
    """
    cfg = config or SigmaConfig()
    members = store.samples(family=family)
    events = list(events) if events is not None else corpus_events(store)
    actor = next((r.actor for r in members if r.actor), None)
    member_set = {r.sha256 for r in members}
    others = {r.sha256 for r in store.samples()} | {e.sha256 for e in events}
    result = SigmaResult(family, actor, len(members), len(others - member_set))
    if not members:
        return result
    by_skeleton: dict[tuple[str, tuple[str, ...]], list[Evidence]] = {}
    for e in events:
        if e.sha256 not in member_set:
            continue
        toks = skeleton(e.category, e.value, cfg)
        if toks:
            ev = by_skeleton.setdefault((e.category, toks), [])
            if all(x.sha256 != e.sha256 for x in ev):
                ev.append(Evidence(e.sha256, e.value, e.offset))
    postings = store.string_postings({x.text for ev in by_skeleton.values() for x in ev})
    need = cfg.min_family_share * len(members)

    def other_df(ev: list[Evidence]) -> int:
        return len({p.sha256 for x in ev for p in postings.get(x.text, ())
                    if p.family != family})

    ranked = sorted(((k, ev) for k, ev in by_skeleton.items() if len(ev) >= need),
                    key=lambda kv: (other_df(kv[1]), -len(kv[1]), -sum(map(len, kv[0][1])),
                                    kv[0]))
    con = event_table(events)
    try:
        for (category, toks), ev in ranked[: cfg.max_rules]:
            rule = render_rule(family, actor, category, toks, ev, len(members), cfg)
            rule.validation = validate_rule(rule.text, family, con)
            (result.rules if rule.validation.ok else result.dropped).append(rule)
            if not rule.validation.ok:
                logger.info("%s: dropped %s (%s)", family, toks, rule.validation.to_dict())
    finally:
        con.close()
    return result
