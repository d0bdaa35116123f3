"""Is there a signature on the pad? Count the ink in a PNG with the standard library (zlib).

A signature pad sends its canvas as a PNG; an untouched pad is all transparent (or all white), and a tap
leaves a dot. Both are refused: a sample receipt needs a real signature. The PNG is decoded here (chunks,
zlib, the five scanline filters, Adam7 interlacing, every colour type and bit depth) rather than with an
imaging library: the check needs pixel values only, and it stops as soon as it has seen enough ink.

An ink pixel is one that is mostly opaque (alpha at least half) and darker than light grey; a pad's
background (transparent, or white) has none.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# Fewer dark pixels than this is a tap or a speck, not a signature (a short stroke of a 2 px pen on the
# 480x180 pad leaves a few hundred).
MIN_INK_PIXELS = 60
# The pad sends its CSS size (480x180); far larger images are not signatures and would cost CPU to check.
MAX_PIXELS = 500_000
_ALPHA_MIN = 128
_LIGHT = 200  # 0-255: pixels lighter than this (all three channels) are paper, not ink

# Adam7 passes: (x start, y start, x step, y step)
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))
_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}


class SignatureImageError(ValueError):
    """The PNG cannot be read; the message says why, for a person."""


def ink_pixels(png: bytes, enough: int = MIN_INK_PIXELS) -> int:
    """How many ink pixels ``png`` has, counting up to ``enough`` (it stops there). Raises
    ``SignatureImageError`` for a PNG that is broken, too large or of an unknown kind."""
    header, palette, transparency, data = _chunks(png)
    width, height, depth, colour, interlace = header
    if colour not in _CHANNELS or depth not in _DEPTHS[colour]:
        raise SignatureImageError("is a PNG of an unknown colour type or bit depth")
    if width == 0 or height == 0 or width * height > MAX_PIXELS:
        raise SignatureImageError(f"is too large an image (at most {MAX_PIXELS:,} pixels)")
    if colour == 3 and not palette:
        raise SignatureImageError("is a palette PNG without a palette")
    ink = _ink_table(colour, depth, palette, transparency)
    bits_per_pixel = _CHANNELS[colour] * depth
    passes = [(0, 0, 1, 1)] if interlace == 0 else list(_ADAM7)
    expected = sum(h * (1 + (w * bits_per_pixel + 7) // 8) for w, h in _pass_sizes(width, height, passes))
    raw = _inflate(data, expected)
    count = 0
    offset = 0
    for w, h in _pass_sizes(width, height, passes):
        row_bytes = (w * bits_per_pixel + 7) // 8
        for row in _unfiltered_rows(raw, offset, w, h, row_bytes, max(1, bits_per_pixel // 8)):
            count += _count_row(row, w, colour, depth, ink)
            if count >= enough:
                return count
        offset += h * (1 + row_bytes)
    return count


def _chunks(png: bytes) -> tuple[tuple[int, int, int, int, int], bytes, bytes, bytes]:
    if not png.startswith(_PNG_MAGIC):
        raise SignatureImageError("is not a PNG image")
    pos, header, palette, transparency, idat = len(_PNG_MAGIC), None, b"", b"", []
    while pos + 8 <= len(png):
        length, kind = struct.unpack(">I4s", png[pos:pos + 8])
        body = png[pos + 8:pos + 8 + length]
        if len(body) != length or len(png) < pos + 12 + length:
            raise SignatureImageError("is a truncated PNG")
        crc = struct.unpack(">I", png[pos + 8 + length:pos + 12 + length])[0]
        if zlib.crc32(kind + body) != crc:
            raise SignatureImageError("is a damaged PNG (checksum)")
        pos += 12 + length
        if kind == b"IHDR" and len(body) == 13:
            width, height, depth, colour, _compression, _filter, interlace = struct.unpack(">IIBBBBB", body)
            if interlace not in (0, 1):
                raise SignatureImageError("is a PNG with an unknown interlace method")
            header = (width, height, depth, colour, interlace)
        elif kind == b"PLTE":
            palette = body
        elif kind == b"tRNS":
            transparency = body
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    if header is None or not idat:
        raise SignatureImageError("is a PNG without an image")
    return header, palette, transparency, b"".join(idat)


def _inflate(data: bytes, expected: int) -> bytes:
    """Decompress at most ``expected`` bytes: a small PNG cannot unpack into gigabytes."""
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(data, expected)
    except zlib.error as exc:
        raise SignatureImageError("is a PNG whose image data cannot be decompressed") from exc
    if len(raw) < expected:
        raise SignatureImageError("is a PNG with missing image data")
    return raw


def _pass_sizes(width: int, height: int, passes: list[tuple[int, int, int, int]]) -> Iterator[tuple[int, int]]:
    for x0, y0, dx, dy in passes:
        w, h = (width - x0 + dx - 1) // dx, (height - y0 + dy - 1) // dy
        if w > 0 and h > 0:
            yield w, h


def _unfiltered_rows(raw: bytes, offset: int, width: int, height: int, row_bytes: int,
                     bpp: int) -> Iterator[bytes]:
    """Undo the scanline filters (PNG spec section 9) row by row."""
    prior = bytes(row_bytes)
    for y in range(height):
        start = offset + y * (1 + row_bytes)
        kind, line = raw[start], raw[start + 1:start + 1 + row_bytes]
        if kind == 0 or not any(line) and (kind == 1 or (kind in (3, 4) and not any(prior))):
            row = bytes(line) if kind == 0 else bytes(row_bytes)  # nothing to add: copy or all zero
        elif kind == 2 and not any(line):
            row = prior
        elif kind == 2:
            row = bytes((a + b) & 0xFF for a, b in zip(line, prior, strict=True))
        elif kind in (1, 3, 4):
            out = bytearray(line)
            for i in range(row_bytes):
                left = out[i - bpp] if i >= bpp else 0
                if kind == 1:
                    out[i] = (out[i] + left) & 0xFF
                elif kind == 3:
                    out[i] = (out[i] + ((left + prior[i]) >> 1)) & 0xFF
                else:
                    up, corner = prior[i], prior[i - bpp] if i >= bpp else 0
                    p = left + up - corner
                    pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                    pred = left if pa <= pb and pa <= pc else up if pb <= pc else corner
                    out[i] = (out[i] + pred) & 0xFF
            row = bytes(out)
        else:
            raise SignatureImageError("is a PNG with an unknown scanline filter")
        prior = row
        yield row


def _ink_table(colour: int, depth: int, palette: bytes, transparency: bytes) -> set[int] | None:
    """For palette images, the indexes that are ink; for grey images, the grey levels (at the bit depth)
    that are ink; None for the colour types whose pixels carry their own alpha."""
    if colour == 3:
        alphas = list(transparency) + [255] * 256
        return {i for i in range(len(palette) // 3)
                if alphas[i] >= _ALPHA_MIN and not _light(*palette[3 * i:3 * i + 3])}
    if colour == 0:
        top = (1 << depth) - 1
        clear = struct.unpack(">H", transparency[:2])[0] if len(transparency) >= 2 else None
        return {v for v in range(top + 1) if v != clear and (v * 255) // top < _LIGHT}
    return None


def _light(r: int, g: int, b: int) -> bool:
    return r >= _LIGHT and g >= _LIGHT and b >= _LIGHT


def _count_row(row: bytes, width: int, colour: int, depth: int, ink: set[int] | None) -> int:
    if colour in (0, 3):
        table = ink or set()
        if depth == 16:  # grey only: compare the 16-bit value with the table's 16-bit levels
            return sum(1 for (v,) in struct.iter_unpack(">H", row[:2 * width]) if v in table)
        per_byte, mask = 8 // depth, (1 << depth) - 1
        values = (byte >> (8 - depth * (k + 1)) & mask for byte in row for k in range(per_byte))
        return sum(1 for _i, v in zip(range(width), values, strict=False) if v in table)
    step = (depth // 8) * _CHANNELS[colour]
    hi = depth // 8  # 16-bit samples: the high byte is enough to tell ink from paper
    count = 0
    for i in range(0, width * step, step):
        px = row[i:i + step:hi]
        if colour == 2:
            count += not _light(px[0], px[1], px[2])
        elif colour == 4:
            count += px[1] >= _ALPHA_MIN and px[0] < _LIGHT
        else:
            count += px[3] >= _ALPHA_MIN and not _light(px[0], px[1], px[2])
    return count
