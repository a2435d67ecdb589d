"""Crafted hostile inputs for the hardening tests (Tests/Fixtures/hostile): files that once crashed,
hung or exhausted memory. Needs only numpy and the standard library (no torch): the pickles are
written opcode by opcode, inside the zip layout torch.save uses.

    python3 Scripts/make_hostile_fixtures.py
"""
import io, os, struct, zipfile, zlib
import numpy as np
from fixture_io import write_raw

OUT = os.path.join(os.path.dirname(__file__), "..", "Tests", "Fixtures", "hostile")


def binint(v):
    """A pickle integer of any size (LONG1 for what BININT cannot hold)."""
    if 0 <= v < 256:
        return b"K" + bytes([v])
    if -2**31 <= v < 2**31:
        return b"J" + struct.pack("<i", v)
    raw = v.to_bytes(8, "little", signed=True)
    return b"\x8a\x08" + raw


def unicode(s):
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def tuple_of(items):
    return b"(" + b"".join(items) + b"t"


def tensor_pickle(sizes, strides, offset=0, numel=4):
    """{'w': _rebuild_tensor_v2(storage '0', offset, sizes, strides, False, OrderedDict())}."""
    storage = tuple_of([unicode("storage"), b"ctorch\nFloatStorage\n", unicode("0"), unicode("cpu"), binint(numel)])
    storage += b"Q"
    args = tuple_of([storage, binint(offset), tuple_of([binint(s) for s in sizes]),
                     tuple_of([binint(s) for s in strides]), b"\x89", b"ccollections\nOrderedDict\n)R"])
    return b"\x80\x02}(" + unicode("w") + b"ctorch._utils\n_rebuild_tensor_v2\n" + args + b"Ru."


def torch_zip(path, pickle, storages=None):
    entries = [("archive/data.pkl", pickle), ("archive/byteorder", b"little")]
    entries += [(f"archive/data/{key}", raw) for key, raw in (storages or {}).items()]
    entries += [("archive/version", b"3\n")]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for name, data in entries:  # a fixed date, so that the files do not change when rerun
            z.writestr(zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0)), data)


def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def main():
    os.makedirs(OUT, exist_ok=True)
    four_floats = np.arange(4, dtype="<f4").tobytes()

    # Safetensors: an element count that wraps to 4 ((2^62 + 1) * 4 = 2^64 + 4) on 16 bytes.
    write_raw(f"{OUT}/overflow_shape.safetensors", {"w": ("F32", [2**62 + 1, 4, 1, 1], four_floats)})
    # NaN and infinity in weights: a c_resnet18 (width / 16) stem and an N:M-shaped tensor.
    stem = np.linspace(-1, 1, 4 * 3 * 3 * 3, dtype="<f4").reshape(4, 3, 3, 3)
    stem[1, 2, 0, 0] = np.inf
    weight = np.linspace(-1, 1, 8 * 4 * 3 * 3, dtype="<f4").reshape(8, 4, 3, 3)
    weight[3, 1, 1, 1] = np.nan
    write_raw(f"{OUT}/nonfinite_weights.safetensors", {
        "w": ("F32", weight.shape, weight.tobytes()), "conv1.weight": ("F32", stem.shape, stem.tobytes())})

    # Pickled tensors: a negative size, a size whose count wraps, a stride-0 view of 2^40 elements.
    torch_zip(f"{OUT}/negative_size.pth", tensor_pickle([-5], [1]), {"0": four_floats})
    torch_zip(f"{OUT}/overflow_size.pth", tensor_pickle([2**62 + 1, 4], [4, 1]), {"0": four_floats})
    torch_zip(f"{OUT}/stride0_huge.pth", tensor_pickle([2**20, 2**20], [0, 0], numel=1), {"0": four_floats[:4]})
    # Found by fuzzing (Scripts/fuzz.sh zip): a central-directory entry whose name runs past the
    # end of the file (name length patched to 65535 in the last entry).
    archive = bytearray(open(f"{OUT}/negative_size.pth", "rb").read())
    last = archive.rindex(b"PK\x01\x02")
    archive[last + 28:last + 30] = struct.pack("<H", 0xFFFF)
    open(f"{OUT}/zip_name_past_end.pth", "wb").write(bytes(archive))
    # Deep nesting: 60,000 tuples (TUPLE1 on TUPLE1 ...), 60,000 lists (all pushed, then appended
    # each into the one below), and a list appended into itself.
    depth = 60000
    torch_zip(f"{OUT}/deep_tuples.pth", b"\x80\x02)" + b"\x85" * depth + b".")
    torch_zip(f"{OUT}/deep_lists.pth", b"\x80\x02" + b"]" * depth + b"a" * (depth - 1) + b".")
    torch_zip(f"{OUT}/self_list.pth", b"\x80\x02]q\x00h\x00a.")

    # Decompression bombs: headers claiming 65,500 x 65,500 pixels (Pillow refuses above
    # 178,956,970). The JPEG is a real one with its frame header's size patched.
    jpeg = bytearray(open(os.path.join(OUT, "..", "images", "photo.jpg"), "rb").read())
    sof = next(i for i in range(len(jpeg) - 1) if jpeg[i] == 0xFF and jpeg[i + 1] in (0xC0, 0xC1, 0xC2))
    jpeg[sof + 5:sof + 9] = struct.pack(">HH", 65500, 65500)
    open(f"{OUT}/bomb.jpg", "wb").write(bytes(jpeg))
    ihdr = struct.pack(">IIBBBBB", 65500, 65500, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)
    png = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")
    open(f"{OUT}/bomb.png", "wb").write(png)


if __name__ == "__main__":
    main()
