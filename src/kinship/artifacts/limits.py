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

# Password candidates read from one text (a body part, a subject). A lure states its password
# once or twice; 16 bounds a crafted body that repeats "password:" thousands of times.
MAX_PASSWORDS_PER_TEXT = 16

# Passwords tried per encrypted zip (default + --password + every enclosing mail's). A wrong
# one costs one header check; 64 bounds the work on a mail built to exhaust it.
MAX_PASSWORDS_TRIED = 64

# Characters of one password read from a text (real ones are < 30; a longer run is a sentence).
MAX_PASSWORD_CHARS = 128

# Characters of the text line kept as the evidence of where a password (or name) came from.
MAX_EVIDENCE_CHARS = 200

# Zip members listed in the result (the central directory is readable without the password;
# MAX_CHILDREN of them are analysed, the listing shows a few more so that a crafted zip with
# thousands of entries does not bloat the result).
MAX_ZIP_LISTED = 1_000

# Characters of a file name matched as a name in texts (NTFS allows 255; a zip entry may
# claim 65,535, which would only slow the scan).
MAX_NAME_CHARS = 255

# Occurrences of "password" (and its translations) examined per text: a real mail has a few;
# 1,000 bounds the scan of a body that repeats the word to slow us down.
MAX_PASSWORD_KEYWORDS = 1_000

# MIME nesting levels parsed in one message (multipart in multipart, message/rfc822 in ...).
# A real mail has 3-5, a chain of ten forwards ~30; the standard library's parser recurses
# once per level (RecursionError near 300), so deeper parts are kept as unparsed text.
MAX_MIME_DEPTH = 40

# Bytes inflated from one OOXML package (all parts read: XML, text parts, embedded objects).
# A 500-page report is ~10 MiB of XML plus its pictures (not read); 128 MiB keeps every real
# document and bounds the memory and CPU of a package of highly compressible parts.
MAX_DOCUMENT_INFLATED = 128 * 1024 * 1024

# Compression ratio accepted for one part once it has inflated past MAX_PART_RATIO_MIN_SIZE:
# XML compresses 5-20x, OLE objects with empty sectors up to ~100x; deflate tops out at
# ~1032x, which is what bombs use. Smaller parts are exempt (a small run of zeros is harmless).
MAX_PART_RATIO = 200
MAX_PART_RATIO_MIN_SIZE = 1024 * 1024

# Parts of one OOXML package whose content is read (metadata, .rels, text parts, embedded
# objects, OLE probes for olevba). A large workbook has a few hundred; more is crafted.
MAX_PARTS_READ = 2_000

# Bytes handed to olevba per document (the OLE parts of an OOXML package, or the OLE file).
# olevba reads what it is given whole and decompresses VBA streams in memory; a VBA project is
# < 1 MiB, a large .xls ~30 MiB. Over this, macros are not analysed (a warning says so).
MAX_OLEVBA_BYTES = 32 * 1024 * 1024

# OLE / OOXML parts handed to olevba per document: one vbaProject.bin plus a few embedded
# OLE objects in real documents.
MAX_OLEVBA_PARTS = 16

# Bytes of zip members analysed per zip (the rest is listed, not read). Members are read and
# analysed one at a time; this bounds the CPU of a zip whose entries overlap or inflate to
# the per-member limit many times over (binary.limits bounds one member).
MAX_ZIP_INFLATED = 256 * 1024 * 1024

# Characters handed to the IOC scan for one file given on the command line, nested parts
# included. The scan (ioc-finder) runs at ~0.2-0.5 Mi characters a second: 1 Mi is ~500
# pages and bounds a file built of IOC-dense text to seconds.
MAX_IOC_CHARS = 1024 * 1024
# Directory entries of one OLE file checked before olevba reads it (a real document has tens;
# each entry is 128 bytes, so a 2 MB file could claim 16k of them).
MAX_OLE_ENTRIES = 4096
