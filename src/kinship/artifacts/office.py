"""Office documents: OOXML (.docx/.xlsm/.pptx ...) and OLE (.doc/.xls/.ppt).

    metadata      docProps/core.xml + app.xml (OOXML) | SummaryInformation (olefile)
    macros        olevba: modules, AutoExec / Suspicious keywords, IOCs olevba finds
    external rels every *.rels Relationship with TargetMode="External" (template injection:
                  attachedTemplate -> http(s); linked oleObject)
    embedded      OOXML */embeddings/* members; OLE \\x01Ole10Native packages (oleobj)
                  -> returned as children to analyse recursively

Every part is read through :class:`_Budget` (limits.py): at most MAX_PARTS_READ parts and
MAX_DOCUMENT_INFLATED bytes per document, no part inflating past MAX_PART_RATIO; olevba gets
only the OLE parts (MAX_OLEVBA_PARTS, MAX_OLEVBA_BYTES), never the whole package, because it
reads what it is given whole. A limit reached is a warning and the rest of the document is
still analysed; a damaged part is a warning too.

oletools are imported lazily (slow to import, untyped) by :func:`_oletools`.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import logging
import re
import struct
import warnings
import zipfile
from dataclasses import dataclass, field
from typing import Any
from xml.etree import ElementTree

from kinship.artifacts import limits
from kinship.artifacts.model import MacroFinding, MacroModule, OfficeInfo, Relationship
from kinship.artifacts.zip_ import check_entry_count
from kinship.binary.archive import ZIP_DAMAGE
from kinship.exceptions import CorruptFileError, FileTooLargeError

logger = logging.getLogger(__name__)

OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
# core.xml / app.xml element (local name) -> metadata key
_CORE_FIELDS = {"creator": "author", "lastModifiedBy": "last_modified_by",
                "created": "created", "modified": "modified", "title": "title",
                "subject": "subject", "keywords": "keywords", "lastPrinted": "last_printed",
                "revision": "revision", "description": "description"}
_APP_FIELDS = {"Company": "company", "Application": "application", "AppVersion": "app_version",
               "Template": "template", "Manager": "manager"}
# olefile SummaryInformation attribute -> metadata key
_OLE_FIELDS = {"author": "author", "last_saved_by": "last_modified_by", "company": "company",
               "create_time": "created", "last_saved_time": "modified", "title": "title",
               "subject": "subject", "creating_application": "application",
               "template": "template", "keywords": "keywords", "manager": "manager"}
# Parts whose visible text is scanned for IOCs.
_TEXT_PARTS = re.compile(r"^(word/(document|header\d*|footer\d*)\.xml|xl/sharedStrings\.xml"
                         r"|ppt/slides/slide\d+\.xml)$")
# Linear time on any input ("<" never occurs inside well-formed XML markup); a bounded
# "<[^>]{0,4096}>" costs 4,096 steps per "<" of a part made of "<" (80 s for 16 MiB).
_TAG_RE = re.compile(r"<[^<>]*>")
# What inflating a damaged part raises: the zip reader's damage errors, a method zipfile
# lacks, a part that wants a password.
_PART_ERRORS: tuple[type[Exception], ...] = (*ZIP_DAMAGE, NotImplementedError, RuntimeError)
_CHUNK = 1024 * 1024


@dataclass
class Embedded:
    name: str
    location: str  # "ooxml embedding" | "ole package"
    data: bytes


@dataclass
class ParsedOffice:
    info: OfficeInfo
    embedded: list[Embedded] = field(default_factory=list)
    texts: list[tuple[str, str]] = field(default_factory=list)  # (location, text) for IOCs
    warnings: list[str] = field(default_factory=list)


@dataclass
class _Budget:
    """What one document may still cost: parts read and bytes inflated (limits.py). Parts
    skipped for a limit are counted by reason and reported once, in :meth:`report`."""

    parts: int = 0
    inflated: int = 0
    skipped: dict[str, dict[str, None]] = field(default_factory=dict)  # reason -> parts

    def skip(self, reason: str, part: str) -> None:
        self.skipped.setdefault(reason, {})[part] = None

    def report(self, out: ParsedOffice) -> None:
        for reason, parts in self.skipped.items():
            names = list(parts)
            shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
            out.warnings.append(f"{len(names)} part(s) not read: {reason}: {shown}")


def _oletools(module: str) -> Any:
    """Import an oletools/olefile module. olevba 0.60 calls pyparsing's deprecated
    ``enablePackrat`` at import time: that warning is not ours to fix, so it is silenced
    for the import only (the test suite turns warnings into errors)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return importlib.import_module(module)


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def parse_ooxml(name: str, data: bytes) -> ParsedOffice:
    """Metadata, external relationships, embedded objects, text and macros of an OOXML file.

    Raises :class:`CorruptFileError` when ``data`` is not a zip with [Content_Types].xml and
    :class:`FileTooLargeError` past MAX_OOXML_MEMBERS (counted before zipfile lists them).
    """
    check_entry_count(name, data, limits.MAX_OOXML_MEMBERS, "MAX_OOXML_MEMBERS")
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        infos = zf.infolist()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        raise CorruptFileError(name, f"not a readable OOXML (zip) document: {e}") from e
    if len(infos) > limits.MAX_OOXML_MEMBERS:
        raise FileTooLargeError(name, f"{len(infos)} members, over MAX_OOXML_MEMBERS")
    names = {i.filename for i in infos}
    if "[Content_Types].xml" not in names:
        raise CorruptFileError(name, "zip without [Content_Types].xml: not an OOXML document")
    out = ParsedOffice(OfficeInfo("ooxml"))
    budget = _Budget()
    with zf:
        for info in infos:
            member = info.filename
            if member == "docProps/core.xml":
                _fields(_xml(zf, info, out, budget), _CORE_FIELDS, out.info.metadata)
            elif member == "docProps/app.xml":
                _fields(_xml(zf, info, out, budget), _APP_FIELDS, out.info.metadata)
            elif member.endswith(".rels"):
                _rels(member, _xml(zf, info, out, budget), out)
            elif "/embeddings/" in member and not info.is_dir():
                if len(out.embedded) < limits.MAX_CHILDREN:
                    blob = _read(zf, info, out, budget)
                    if blob is not None:
                        out.embedded.append(Embedded(member, "ooxml embedding", blob))
                else:
                    budget.skip(f"over MAX_CHILDREN ({limits.MAX_CHILDREN}) embedded objects",
                                member)
            elif _TEXT_PARTS.match(member):
                raw = _read(zf, info, out, budget)
                if raw is not None:
                    text = _TAG_RE.sub(" ", raw.decode("utf-8", "replace"))
                    out.texts.append((f"part:{member}", " ".join(text.split())
                                      [: limits.MAX_TEXT_CHARS]))
        ole_parts = _ole_parts(zf, infos, out, budget)
    budget.report(out)
    if ole_parts:
        _macros(name, _stored_zip(ole_parts), out)
    return out


def _read(zf: zipfile.ZipFile, info: zipfile.ZipInfo, out: ParsedOffice, budget: _Budget,
          limit: int | None = None) -> bytes | None:
    """At most ``limit`` (default MAX_XML_BYTES) bytes of a part, inflated a chunk at a time
    within the document's budget and the ratio limit; None (and a warning) when a limit is
    reached or the part is damaged."""
    limit = limits.MAX_XML_BYTES if limit is None else limit
    compressed = max(info.compress_size, 1)
    if budget.parts >= limits.MAX_PARTS_READ:
        budget.skip(f"over MAX_PARTS_READ ({limits.MAX_PARTS_READ}) parts read", info.filename)
        return None
    if info.file_size > limit:
        budget.skip(f"over {limit} bytes", info.filename)
        return None
    if (info.file_size > limits.MAX_PART_RATIO_MIN_SIZE
            and info.file_size / compressed > limits.MAX_PART_RATIO):
        budget.skip(f"inflates more than {limits.MAX_PART_RATIO}:1 (bomb?)", info.filename)
        return None
    budget.parts += 1
    chunks: list[bytes] = []
    size = 0
    try:
        with zf.open(info) as fh:
            while True:
                if budget.inflated >= limits.MAX_DOCUMENT_INFLATED:
                    budget.skip(f"over MAX_DOCUMENT_INFLATED "
                                f"({limits.MAX_DOCUMENT_INFLATED} bytes inflated)",
                                info.filename)
                    return None
                chunk = fh.read(min(_CHUNK, limit + 1 - size,
                                    limits.MAX_DOCUMENT_INFLATED - budget.inflated))
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
                budget.inflated += len(chunk)
                if size > limit:  # the header lied about the size
                    budget.skip(f"over {limit} bytes", info.filename)
                    return None
                if (size > limits.MAX_PART_RATIO_MIN_SIZE
                        and size / compressed > limits.MAX_PART_RATIO):
                    budget.skip(f"inflates more than {limits.MAX_PART_RATIO}:1 (bomb?)",
                                info.filename)
                    return None
    except _PART_ERRORS as e:
        out.warnings.append(f"{info.filename}: unreadable part: {type(e).__name__}: {e}")
        return None
    return b"".join(chunks)


def _ole_parts(zf: zipfile.ZipFile, infos: list[zipfile.ZipInfo], out: ParsedOffice,
               budget: _Budget) -> list[tuple[str, bytes]]:
    """The parts that are OLE files (vbaProject.bin, embedded objects): what olevba looks
    at in a package. At most MAX_OLEVBA_PARTS of them, MAX_OLEVBA_BYTES in all."""
    found: list[tuple[str, bytes]] = []
    total = 0
    for info in infos:
        if info.is_dir() or info.file_size < len(OLE_MAGIC):
            continue
        try:
            with zf.open(info) as fh:
                magic = fh.read(len(OLE_MAGIC))
        except _PART_ERRORS:
            continue  # reported if the part is read for anything else
        if magic != OLE_MAGIC:
            continue
        if len(found) >= limits.MAX_OLEVBA_PARTS:
            budget.skip(f"macros: over MAX_OLEVBA_PARTS ({limits.MAX_OLEVBA_PARTS}) OLE parts",
                        info.filename)
            continue
        blob = _read(zf, info, out, budget, limits.MAX_OLEVBA_BYTES - total)
        if blob is not None and (why := implausible_ole(blob)) is not None:
            out.warnings.append(f"{info.filename}: macros not analysed: {why}")
            continue
        if blob is not None:
            found.append((info.filename, blob))
            total += len(blob)
    return found


def _stored_zip(parts: list[tuple[str, bytes]]) -> bytes:
    """A zip of ``parts`` (uncompressed), for olevba to read them as it reads a package."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for member, blob in parts:
            zf.writestr(member, blob)
    return buf.getvalue()


def _xml(zf: zipfile.ZipFile, info: zipfile.ZipInfo, out: ParsedOffice, budget: _Budget
         ) -> ElementTree.Element | None:
    raw = _read(zf, info, out, budget)
    if raw is None:
        return None
    try:
        # expat >= 2.4 (Python 3.11 ships 2.5) stops entity-expansion bombs itself.
        return ElementTree.fromstring(raw)
    except ElementTree.ParseError as e:
        out.warnings.append(f"{info.filename}: malformed XML: {e}")
        return None


def _fields(root: ElementTree.Element | None, wanted: dict[str, str],
            into: dict[str, str]) -> None:
    if root is None:
        return
    for el in root:
        key = wanted.get(_local(el.tag))
        if key and el.text and el.text.strip():
            into[key] = el.text.strip()[: limits.MAX_FIELD_CHARS]


def _rels(member: str, root: ElementTree.Element | None, out: ParsedOffice) -> None:
    if root is None:
        return
    for el in root:
        if _local(el.tag) != "Relationship" or el.get("TargetMode", "") != "External":
            continue
        target = el.get("Target", "")[: limits.MAX_FIELD_CHARS]
        kind = el.get("Type", "").rpartition("/")[2]
        out.info.external_relationships.append(Relationship(member, kind, target))
        out.texts.append((f"rels:{member}", target))


def parse_ole(name: str, data: bytes) -> ParsedOffice:
    """Metadata, Ole10Native packages and macros of an OLE compound file."""
    olefile = _oletools("olefile")
    try:
        ole = olefile.OleFileIO(data)
    except (OSError, ValueError, EOFError, IndexError, TypeError) as e:
        raise CorruptFileError(name, f"not a readable OLE compound file: {e}") from e
    out = ParsedOffice(OfficeInfo("ole"))
    budget = _Budget()
    try:
        _ole_metadata(ole, out)
        _ole_packages(ole, out, budget)
    finally:
        ole.close()
    budget.report(out)
    if len(data) > limits.MAX_OLEVBA_BYTES:
        out.warnings.append(f"macros not analysed: {len(data)} bytes, over MAX_OLEVBA_BYTES "
                            f"({limits.MAX_OLEVBA_BYTES})")
    elif (why := implausible_ole(data)) is not None:
        out.warnings.append(f"macros not analysed: {why}")
    else:
        _macros(name, data, out)
    return out


def implausible_ole(blob: bytes) -> str | None:
    """Why olevba must not read the OLE file ``blob``, or None.

    olevba reads every stream, orphans too, by following the FAT; a crafted FAT whose chains
    loop over the same sectors makes a 250 KB file read as gigabytes (a fuzzed .doc reached
    1.4 GB). In a real compound file each sector belongs to one stream: no stream is longer
    than the file, and all of them together at most twice the file (the mini streams live
    inside the root entry's stream)."""
    olefile = _oletools("olefile")
    try:
        ole = olefile.OleFileIO(io.BytesIO(blob))
    except Exception as e:  # olefile raises its own bare Exception subclasses
        return f"not a readable OLE file: {e}"
    try:
        total = 0
        for sid in range(min(len(ole.direntries), limits.MAX_OLE_ENTRIES + 1)):
            if sid == limits.MAX_OLE_ENTRIES:
                return f"over MAX_OLE_ENTRIES ({limits.MAX_OLE_ENTRIES}) directory entries"
            entry = ole.direntries[sid] or ole._load_direntry(sid)
            if entry.entry_type not in (olefile.STGTY_STREAM, olefile.STGTY_ROOT):
                continue
            if entry.size > len(blob):
                return (f"OLE stream {entry.name!r} declares {entry.size} bytes, the file has "
                        f"{len(blob)} (a looping FAT?)")
            total += entry.size
        if total > 2 * len(blob):
            return f"OLE streams declare {total} bytes in all, the file has {len(blob)}"
    except Exception as e:
        return f"OLE directory unreadable: {type(e).__name__}: {e}"
    finally:
        ole.close()
    return None


def _ole_metadata(ole: Any, out: ParsedOffice) -> None:
    try:
        meta = ole.get_metadata()
    except (OSError, ValueError, EOFError, IndexError, TypeError) as e:
        out.warnings.append(f"SummaryInformation unreadable: {e}")
        return
    for attr, key in _OLE_FIELDS.items():
        value = getattr(meta, attr, None)
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        if value not in (None, ""):
            out.info.metadata[key] = str(value)[: limits.MAX_FIELD_CHARS]


def _ole_packages(ole: Any, out: ParsedOffice, budget: _Budget) -> None:
    """Ole10Native streams, each read whole within the document's budget (several directory
    entries may name the same sectors: the budget, not the file size, bounds the total)."""
    oleobj = _oletools("oletools.oleobj")
    for entry in ole.listdir():
        if not entry or entry[-1] != "\x01Ole10Native":
            continue
        path = "/".join(entry)
        if len(out.embedded) >= limits.MAX_CHILDREN:
            budget.skip(f"over MAX_CHILDREN ({limits.MAX_CHILDREN}) embedded objects", path)
            continue
        try:
            size = int(ole.get_size(entry))
            if budget.inflated + size > limits.MAX_DOCUMENT_INFLATED:
                budget.skip(f"over MAX_DOCUMENT_INFLATED ({limits.MAX_DOCUMENT_INFLATED} "
                            "bytes read)", path)
                continue
            budget.inflated += size
            native = oleobj.OleNativeStream(ole.openstream(entry).read())
        except (OSError, ValueError, EOFError, IndexError, TypeError, RecursionError,
                struct.error) as e:  # oletools reads fields past a truncated stream
            out.warnings.append(f"{path}: Ole10Native package unreadable: {e}")
            continue
        blob = native.data if isinstance(native.data, bytes) else b""
        fname = native.filename or path
        if isinstance(fname, bytes):
            fname = fname.decode("latin-1", "replace")
        out.embedded.append(Embedded(str(fname), "ole package", blob))
        out.texts.append((f"ole package:{path}",
                          " ".join(str(x) for x in (native.filename, native.src_path,
                                                    native.temp_path) if x)))


def _macros(name: str, data: bytes, out: ParsedOffice) -> None:
    """VBA modules and olevba's keyword/IOC scan; parser failures become warnings."""
    olevba = _oletools("oletools.olevba")
    try:
        vba = olevba.VBA_Parser(name, data=data)
    except Exception as e:  # olevba raises bare Exception subclasses of its own on bad input
        out.warnings.append(f"olevba could not open the document: {e}")
        return
    try:
        if not vba.detect_vba_macros():
            return
        out.info.has_macros = True
        for _fname, stream, vba_name, code in vba.extract_macros():
            source = code if isinstance(code, str) else str(code)
            if len(out.info.macros) >= limits.MAX_CHILDREN:
                out.warnings.append(f"over MAX_CHILDREN ({limits.MAX_CHILDREN}) VBA modules: "
                                    "rest not analysed")
                break
            out.info.macros.append(MacroModule(
                str(vba_name), str(stream), len(source),
                _sha256(source.encode("utf-8", "replace"))))
            out.texts.append((f"macro:{vba_name}", source[: limits.MAX_TEXT_CHARS]))
        for kind, keyword, description in vba.analyze_macros() or ():
            out.info.macro_findings.append(MacroFinding(
                str(kind), str(keyword)[: limits.MAX_FIELD_CHARS], str(description)))
    except Exception as e:  # a corrupt VBA project must not abort the document
        out.warnings.append(f"olevba failed: {type(e).__name__}: {e}")
    finally:
        vba.close()
