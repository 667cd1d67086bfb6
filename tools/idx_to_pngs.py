#!/usr/bin/env python3
"""Writes the images of an MNIST IDX file (raw or .gz) as 8-bit grey PNGs into a folder,
cycling through them until COUNT files exist: a big folder to drop on the workbench
(`lethe bench gui --drop DIR`, issue #30). Standard library only.

    python3 tools/idx_to_pngs.py assets/data/mnist-10k-images-idx3-ubyte.gz /tmp/big 60000
"""
import gzip
import os
import struct
import sys
import zlib


def png(width, height, rows):
    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    raw = b"".join(b"\x00" + row for row in rows)
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def main(source, out, count):
    opener = gzip.open if source.endswith(".gz") else open
    with opener(source, "rb") as f:
        data = f.read()
    magic, n, h, w = struct.unpack(">IIII", data[:16])
    if magic != 0x803:
        sys.exit(f"{source}: not an IDX images file (magic {magic:#x})")
    os.makedirs(out, exist_ok=True)
    for i in range(count):
        k = i % n
        pixels = data[16 + k * h * w:16 + (k + 1) * h * w]
        rows = [pixels[r * w:(r + 1) * w] for r in range(h)]
        with open(os.path.join(out, f"{i:05d}.png"), "wb") as f:
            f.write(png(w, h, rows))
    print(f"wrote {count} PNGs ({w}x{h} grey) to {out}")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
