"""A minimal PDF writer for tests: pages of text cells in Helvetica, nothing else.

Audit statements are PDFs; the tests need ones whose content they control (the fingerprints,
their spelling, where a table cell wraps) without a PDF library in the project's dependencies.
Each cell is its own text object at (x, y) points from the bottom left, the way PDF producers
draw table cells, so pypdf's extraction meets the same layout it meets in real statements.
"""

from __future__ import annotations

from collections.abc import Sequence

Cell = tuple[float, float, str]  # x, y, text
PAGE_SIZE = (842, 595)  # A4 landscape, as wide tables are printed


def pdf(pages: Sequence[Sequence[Cell]], font_size: float = 6) -> bytes:
    """The bytes of a PDF 1.4 file with one page per item of `pages`."""
    objects: list[bytes] = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"",  # the page tree, written once the page numbers are known
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    kids: list[int] = []
    for cells in pages:
        objects.append(_stream(_content(cells, font_size)))
        objects.append(_page(content=len(objects)))
        kids.append(len(objects))
    refs = " ".join(f"{kid} 0 R" for kid in kids)
    objects[1] = f"<< /Type /Pages /Kids [{refs}] /Count {len(kids)} >>".encode()
    return _file(objects)


def _content(cells: Sequence[Cell], font_size: float) -> bytes:
    ops = [f"BT /F1 {font_size} Tf {x} {y} Td ({_escape(text)}) Tj ET" for x, y, text in cells]
    return ("\n".join(ops) + "\n").encode("latin-1")


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def _stream(data: bytes) -> bytes:
    return b"<< /Length %d >>\nstream\n" % len(data) + data + b"endstream"


def _page(content: int) -> bytes:
    width, height = PAGE_SIZE
    return (
        f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {width} {height}]"
        f" /Resources << /Font << /F1 3 0 R >> >> /Contents {content} 0 R >>"
    ).encode()


def _file(objects: Sequence[bytes]) -> bytes:
    out = bytearray(b"%PDF-1.4\n")
    offsets: list[int] = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\n" % (len(objects) + 1)
    out += b"startxref\n%d\n%%%%EOF\n" % xref
    return bytes(out)
