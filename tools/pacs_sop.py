"""Which SOP classes are images the viewer can show, and what the others are called in a note.

A series fetched from a PACS may hold objects beside its images: structured reports (a dose report, an
earlier radconsult summary), presentation states, key object selections, encapsulated PDFs. They are
skipped, and :func:`instance_kind` names them for the note the clinician sees.
"""

from __future__ import annotations

_STORAGE = "1.2.840.10008.5.1.4.1.1."

# exact SOP classes first (they refine the prefixes below), then prefixes under the storage root
_EXACT = {
    _STORAGE + "88.59": "key object selection",
    _STORAGE + "481.1": "image",                          # RT Image Storage and its enhanced forms are images
    _STORAGE + "481.23": "image",
    _STORAGE + "481.24": "image",
    _STORAGE + "66.4": "segmentation",
    _STORAGE + "104.1": "encapsulated PDF",
}
_PREFIXES = (
    (_STORAGE + "88.", "structured report"),
    (_STORAGE + "11.", "presentation state"),
    (_STORAGE + "104.", "encapsulated document"),
    (_STORAGE + "9.", "waveform"),
    (_STORAGE + "66", "raw data or registration object"),
    (_STORAGE + "481.", "radiotherapy object"),
    (_STORAGE + "67", "real-world value mapping"),
    (_STORAGE + "90.", "content assessment"),
    (_STORAGE + "91.", "microscopy annotation"),
)


def instance_kind(sop_class_uid: str, *, has_rows: bool) -> str:
    """``"image"`` for an object with pixel data to show, else a short name of what it is.

    ``has_rows``: whether QIDO reported Rows and Columns for the instance; an unknown SOP class without them
    is not treated as an image.
    """
    uid = (sop_class_uid or "").strip()
    if uid in _EXACT:
        return _EXACT[uid]
    for prefix, kind in _PREFIXES:
        if uid.startswith(prefix):
            return kind
    return "image" if has_rows else "object without pixel data"


def is_image_kind(kind: str) -> bool:
    return kind == "image"
