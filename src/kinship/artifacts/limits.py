"""Limits on hostile e-mails and documents (read at call time, so tests may monkeypatch).

Each limit names what it bounds and why the default is what it is.
"""

from __future__ import annotations

# Largest artifact read (bytes). Mail servers cap messages at 25-50 MiB (Gmail 25, Exchange
# Online 35 after base64 growth); 64 MiB keeps every real message and bounds memory.
MAX_ARTIFACT_SIZE = 64 * 1024 * 1024

# Nesting depth of attachments in attachments (mail -> zip -> docx -> embedded object is 3).
# Phishing chains seen in reports stop at 3-4; 6 bounds recursion on crafted input.
MAX_DEPTH = 6

# Attachments / zip members / embedded objects analysed per node. Phishing mails carry 1-3;
# 200 bounds the work on a crafted message with thousands of MIME parts.
MAX_CHILDREN = 200

# Links kept per message (a newsletter holds ~100; more is noise or an attack on us).
MAX_LINKS = 1_000

# Received headers kept: real chains have < 15 hops; 100 bounds a header-stuffing message.
MAX_HOPS = 100

# Characters of one text (body part, macro source, document text) passed to the IOC scan:
# 2 Mi characters is ~1,000 pages and keeps the regex scan under a second.
MAX_TEXT_CHARS = 2 * 1024 * 1024

# Bytes of one OOXML XML part parsed (core.xml is < 2 KiB, document.xml of a 500-page report
# ~10 MiB); 16 MiB bounds memory and an inflating (bomb) member.
MAX_XML_BYTES = 16 * 1024 * 1024

# Members listed in an OOXML package: a large workbook has a few hundred parts.
MAX_OOXML_MEMBERS = 10_000

# Characters kept of one string in the result (a header, a link text, a relationship target).
MAX_FIELD_CHARS = 2_048
