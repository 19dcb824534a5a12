"""Names, limits and checks shared by the OpenRaster reader and writer."""

from __future__ import annotations

import posixpath
import re
import zipfile
import xml.etree.ElementTree as ET
from typing import Iterable

from .errors import DocumentFileError

MIMETYPE = b"image/openraster"
ORA_VERSION = "0.0.5"

# Layer.attributes (e.g. AI generation metadata) live in this namespace...
ATTR_NS = "urn:canvasai:ora:attributes"
ATTR_PREFIX = "canvasai"
# ...and our own extensions (alpha lock, masks) in this one, so a user key can
# never collide with them. Other readers ignore both, as the spec allows.
DOC_NS = "urn:canvasai:ora:document"
DOC_PREFIX = "canvasai-doc"

ET.register_namespace(ATTR_PREFIX, ATTR_NS)
ET.register_namespace(DOC_PREFIX, DOC_NS)


def attr(ns: str, name: str) -> str:
    return f"{{{ns}}}{name}"


# Hostile-file limits, checked on the zip directory before anything is inflated.
MAX_ENTRIES = 20_000
MAX_STACK_XML = 16 * 1024 * 1024
MAX_ENTRY_SIZE = 1 << 30  # declared uncompressed size of one member
MAX_TOTAL_SIZE = 4 << 30  # of all members
# PNG is already compressed; a member that deflates better than this is a bomb.
MAX_RATIO = 200
RATIO_MIN_SIZE = 8 * 1024 * 1024
MAX_NODES = 10_000
MAX_DEPTH = 64
MAX_TOTAL_LAYER_PIXELS = 1 << 30

# Characters XML 1.0 cannot carry at all (not even escaped).
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def xml_safe(text: str) -> str:
    return _XML_INVALID.sub("", text)


def check_zip_directory(path: str, infos: Iterable[zipfile.ZipInfo]) -> None:
    infos = list(infos)
    if len(infos) > MAX_ENTRIES:
        raise DocumentFileError(path, f"too many entries in archive ({len(infos)})")
    total = 0
    for info in infos:
        if info.file_size > MAX_ENTRY_SIZE:
            raise DocumentFileError(path, f"archive member {info.filename!r} is too large ({info.file_size} bytes)")
        if (
            info.file_size > RATIO_MIN_SIZE
            and info.file_size > MAX_RATIO * max(info.compress_size, 1)
        ):
            raise DocumentFileError(path, f"archive member {info.filename!r} looks like a zip bomb")
        total += info.file_size
    if total > MAX_TOTAL_SIZE:
        raise DocumentFileError(path, f"archive expands to too much data ({total} bytes)")


def safe_member_name(path: str, src: str) -> str:
    """Normalise an in-archive path; reject anything that could escape it."""
    if not src or "\x00" in src or "\\" in src or src.startswith("/") or re.match(r"^[A-Za-z]:", src):
        raise DocumentFileError(path, f"invalid layer path {src!r}")
    norm = posixpath.normpath(src)
    if norm == ".." or norm.startswith("../") or norm.startswith("/") or norm == ".":
        raise DocumentFileError(path, f"layer path escapes the archive: {src!r}")
    return norm


def parse_stack_xml(path: str, data: bytes) -> ET.Element:
    # ElementTree never fetches external entities, and expat limits entity
    # amplification; a DTD has no business in stack.xml, so refuse it outright.
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise DocumentFileError(path, "stack.xml contains a DTD, which is not allowed")
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise DocumentFileError(path, f"stack.xml is not well-formed XML ({exc})") from exc
    if root.tag != "image":
        raise DocumentFileError(path, f"stack.xml root element is <{root.tag}>, expected <image>")
    return root


def verify_ora_file(path: str, *, deep: bool = True) -> None:
    """Re-open a written .ora and check what a reader needs (mimetype first,
    stored and exact; stack.xml parses; every referenced file present;
    optionally every member's CRC)."""
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            if not infos or infos[0].filename != "mimetype":
                raise DocumentFileError(path, "verification failed: mimetype is not the first entry")
            if infos[0].compress_type != zipfile.ZIP_STORED or zf.read("mimetype") != MIMETYPE:
                raise DocumentFileError(path, "verification failed: bad mimetype entry")
            names = set(zf.namelist())
            root = parse_stack_xml(path, zf.read("stack.xml"))
            for el in root.iter():
                for key in ("src", attr(DOC_NS, "mask-src")):
                    src = el.get(key)
                    if src is not None and safe_member_name(path, src) not in names:
                        raise DocumentFileError(path, f"verification failed: {src} missing")
            for required in ("mergedimage.png", "Thumbnails/thumbnail.png"):
                if required not in names:
                    raise DocumentFileError(path, f"verification failed: {required} missing")
            if deep:
                bad = zf.testzip()
                if bad is not None:
                    raise DocumentFileError(path, f"verification failed: CRC error in {bad}")
    except (zipfile.BadZipFile, OSError, KeyError) as exc:
        raise DocumentFileError(path, f"verification failed: {exc}") from exc
