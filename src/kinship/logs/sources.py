"""Sigma log sources (``product``/``service``/``category``) as the channels and event ids of
Windows event logs, and the field mapping of Security 4688 to Sysmon's process creation.

A log source maps to one or more :class:`Source` (a channel and, optionally, its event ids); a
rule is run only over the events of its sources, and only when one of those channels is in the
logs. A log source missing here is counted as unsupported, never run over every event.
"""

from __future__ import annotations

from dataclasses import dataclass

SYSMON = "Microsoft-Windows-Sysmon/Operational"
POWERSHELL = "Microsoft-Windows-PowerShell/Operational"
POWERSHELL_CLASSIC = "Windows PowerShell"
DEFENDER = "Microsoft-Windows-Windows Defender/Operational"
# Raise when a change here changes which rules are converted (part of the rule cache's key).
MAPPING_VERSION = 1


@dataclass(frozen=True, slots=True)
class Source:
    channel: str
    event_ids: tuple[int, ...] = ()  # empty: every event of the channel


def _sysmon(*eids: int) -> tuple[Source, ...]:
    return (Source(SYSMON, eids),)


# Sigma service -> channels (product windows).
SERVICES: dict[str, tuple[Source, ...]] = {
    "security": (Source("Security"),),
    "system": (Source("System"),),
    "application": (Source("Application"),),
    "sysmon": (Source(SYSMON),),
    "powershell": (Source(POWERSHELL),),
    "powershell-classic": (Source(POWERSHELL_CLASSIC),),
    "windefend": (Source(DEFENDER),),
    "taskscheduler": (Source("Microsoft-Windows-TaskScheduler/Operational"),),
    "wmi": (Source("Microsoft-Windows-WMI-Activity/Operational"),),
    "bits-client": (Source("Microsoft-Windows-Bits-Client/Operational"),),
    "codeintegrity-operational": (Source("Microsoft-Windows-CodeIntegrity/Operational"),),
    "firewall-as": (Source("Microsoft-Windows-Windows Firewall With Advanced Security/"
                           "Firewall"),),
    "dns-client": (Source("Microsoft-Windows-DNS Client Events/Operational"),),
    "ntlm": (Source("Microsoft-Windows-NTLM/Operational"),),
    "applocker": (Source("Microsoft-Windows-AppLocker/EXE and DLL"),
                  Source("Microsoft-Windows-AppLocker/MSI and Script"),
                  Source("Microsoft-Windows-AppLocker/Packaged app-Deployment"),
                  Source("Microsoft-Windows-AppLocker/Packaged app-Execution")),
    "terminalservices-localsessionmanager": (
        Source("Microsoft-Windows-TerminalServices-LocalSessionManager/Operational"),),
}

# Sigma category -> channels and event ids (Sysmon, and the built-in equivalents).
CATEGORIES: dict[str, tuple[Source, ...]] = {
    "process_creation": (Source(SYSMON, (1,)), Source("Security", (4688,))),
    "process_termination": _sysmon(5),
    "network_connection": _sysmon(3),
    "driver_load": _sysmon(6),
    "image_load": _sysmon(7),
    "create_remote_thread": _sysmon(8),
    "raw_access_thread": _sysmon(9),
    "process_access": _sysmon(10),
    "file_event": _sysmon(11),
    "file_change": _sysmon(2),
    "registry_add": _sysmon(12),
    "registry_delete": _sysmon(12),
    "registry_set": _sysmon(13),
    "registry_rename": _sysmon(14),
    "registry_event": _sysmon(12, 13, 14),
    "create_stream_hash": _sysmon(15),
    "sysmon_status": _sysmon(4, 16),
    "pipe_created": _sysmon(17, 18),
    "wmi_event": _sysmon(19, 20, 21),
    "dns_query": _sysmon(22),
    "file_delete": _sysmon(23, 26),
    "process_tampering": _sysmon(25),
    "file_executable_detected": _sysmon(29),
    "sysmon_error": _sysmon(255),
    "ps_script": (Source(POWERSHELL, (4104,)),),
    "ps_module": (Source(POWERSHELL, (4103,)),),
    "ps_classic_start": (Source(POWERSHELL_CLASSIC, (400,)),),
    "ps_classic_provider_start": (Source(POWERSHELL_CLASSIC, (600,)),),
}

# Security 4688 fields under the names of Sysmon's process creation (which the rules use).
FIELD_ALIASES: dict[tuple[str, str], dict[str, str]] = {
    ("Security", "4688"): {"NewProcessName": "Image", "ParentProcessName": "ParentImage",
                           "SubjectUserName": "User"},
}


def sources(product: str | None, service: str | None,
            category: str | None) -> tuple[Source, ...] | None:
    """The channels of a rule's log source; None when kinship does not map it (or the rule
    is not for Windows)."""
    if product not in (None, "windows"):
        return None
    if category is not None:
        return CATEGORIES.get(category)
    if service is not None:
        return SERVICES.get(service)
    return None


def add_aliases(fields: dict[str, str]) -> None:
    """Add the Sysmon names of a Security 4688 event's fields (the originals stay)."""
    aliases = FIELD_ALIASES.get((fields.get("Channel", ""), fields.get("EventID", "")))
    for src, dst in (aliases or {}).items():
        if src in fields and dst not in fields:
            fields[dst] = fields[src]
