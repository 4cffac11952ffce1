"""Office documents: OOXML (.docx/.xlsm/.pptx ...) and OLE (.doc/.xls/.ppt).

    metadata      docProps/core.xml + app.xml (OOXML) | SummaryInformation (olefile)
    macros        olevba: modules, AutoExec / Suspicious keywords, IOCs olevba finds
    external rels every *.rels Relationship with TargetMode="External" (template injection:
                  attachedTemplate -> http(s); linked oleObject)
    embedded      OOXML */embeddings/* members; OLE \\x01Ole10Native packages (oleobj)
                  -> returned as children to analyse recursively

oletools are imported lazily (slow to import, untyped) by :func:`_oletools`.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import logging
import re
import warnings
import zipfile
from dataclasses import dataclass, field
from typing import Any
from xml.etree import ElementTree

from kinship.artifacts import limits
from kinship.artifacts.model import MacroFinding, MacroModule, OfficeInfo, Relationship
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
_TAG_RE = re.compile(r"<[^>]{0,4096}>")


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
    """Metadata, external relationships, embedded objects, text and macros of an OOXML file."""
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
    with zf:
        for info in infos:
            member = info.filename
            if member == "docProps/core.xml":
                _fields(_xml(zf, info, out), _CORE_FIELDS, out.info.metadata)
            elif member == "docProps/app.xml":
                _fields(_xml(zf, info, out), _APP_FIELDS, out.info.metadata)
            elif member.endswith(".rels"):
                _rels(member, _xml(zf, info, out), out)
            elif "/embeddings/" in member and not info.is_dir():
                if len(out.embedded) < limits.MAX_CHILDREN:
                    blob = _read(zf, info, out)
                    if blob is not None:
                        out.embedded.append(Embedded(member, "ooxml embedding", blob))
            elif _TEXT_PARTS.match(member):
                raw = _read(zf, info, out)
                if raw is not None:
                    text = _TAG_RE.sub(" ", raw.decode("utf-8", "replace"))
                    out.texts.append((f"part:{member}", " ".join(text.split())
                                      [: limits.MAX_TEXT_CHARS]))
    _macros(name, data, out)
    return out


def _read(zf: zipfile.ZipFile, info: zipfile.ZipInfo, out: ParsedOffice) -> bytes | None:
    """At most MAX_XML_BYTES of a member, inflated in a bounded read (bomb-safe)."""
    try:
        with zf.open(info) as fh:
            raw = fh.read(limits.MAX_XML_BYTES + 1)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError,
            RuntimeError) as e:
        out.warnings.append(f"{info.filename}: unreadable member: {e}")
        return None
    if len(raw) > limits.MAX_XML_BYTES:
        out.warnings.append(f"{info.filename}: over MAX_XML_BYTES, not read")
        return None
    return raw


def _xml(zf: zipfile.ZipFile, info: zipfile.ZipInfo, out: ParsedOffice
         ) -> ElementTree.Element | None:
    raw = _read(zf, info, out)
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
    try:
        _ole_metadata(ole, out)
        _ole_packages(ole, out)
    finally:
        ole.close()
    _macros(name, data, out)
    return out


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


def _ole_packages(ole: Any, out: ParsedOffice) -> None:
    oleobj = _oletools("oletools.oleobj")
    for entry in ole.listdir():
        if not entry or entry[-1] != "\x01Ole10Native":
            continue
        path = "/".join(entry)
        try:
            native = oleobj.OleNativeStream(ole.openstream(entry).read())
        except (OSError, ValueError, EOFError, IndexError, TypeError) as e:
            out.warnings.append(f"{path}: Ole10Native package unreadable: {e}")
            continue
        blob = native.data if isinstance(native.data, bytes) else b""
        fname = native.filename or path
        if isinstance(fname, bytes):
            fname = fname.decode("latin-1", "replace")
        if len(out.embedded) < limits.MAX_CHILDREN:
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
            if len(out.info.macros) < limits.MAX_CHILDREN:
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
