#!/usr/bin/env python3
"""Writes Tests/Fixtures/models/tiny.nm.safetensors: a minimal exported-model file (the format of
`maxq export`, README "The exported model file") with one 2:4 layer (4 outputs, 8 inputs, 3x3),
one dense layer and one other tensor. It seeds the `nm` fuzz target (Scripts/fuzz.sh); the metadata
names c_resnet18, whose layers it does not have, so it decodes but does not build a model."""
import json, struct, pathlib
import numpy as np

rng = np.random.default_rng(0)
o, i, k, n, m = 4, 8, 3, 2, 4
values = rng.standard_normal(o * k * k * (i // m) * n).astype("<f4")
indices = np.array([[0, 2], [1, 3], [0, 1], [2, 3]] * (values.size // 8), dtype=np.uint8).reshape(-1)
bits = np.zeros(values.size * 2, dtype=np.uint8)
bits[0::2], bits[1::2] = indices & 1, indices >> 1
tensors = {
    "layer1.0.convbn1.values": values, "layer1.0.convbn1.bias": rng.standard_normal(o).astype("<f4"),
    "layer1.0.convbn2.weight": rng.standard_normal((o, o, 1, 1)).astype("<f4"),
    "layer1.0.convbn2.bias": np.zeros(o, "<f4"), "fc.bias": np.zeros(10, "<f4"),
    "layer1.0.convbn1.indices": np.packbits(bits, bitorder="little"),
}
layers = [
    {"name": "layer1.0.convbn1", "kind": "nm", "shape": [o, i, k, k], "stride": 1, "padding": 1, "groups": 1,
     "activation": "relu", "n": n, "m": m},
    {"name": "layer1.0.convbn2", "kind": "dense", "shape": [o, o, 1, 1], "stride": 1, "padding": 0, "groups": 1},
]
header = {"__metadata__": {"format": "maxq-nm", "version": "1", "arch": "c_resnet18",
                           "conv_bn_type": "SoftMaxQConv2DBN", "N": str(n), "M": str(m), "num_classes": "10",
                           "layers": json.dumps(layers)}}
offset, blobs = 0, []
for name, array in tensors.items():
    data = array.tobytes()
    header[name] = {"dtype": "U8" if array.dtype == np.uint8 else "F32", "shape": list(array.shape),
                    "data_offsets": [offset, offset + len(data)]}
    offset += len(data)
    blobs.append(data)
text = json.dumps(header).encode()
text += b" " * (-len(text) % 8)
path = pathlib.Path(__file__).resolve().parent.parent / "Tests/Fixtures/models/tiny.nm.safetensors"
path.write_bytes(struct.pack("<Q", len(text)) + text + b"".join(blobs))
print(f"wrote {path} ({path.stat().st_size} bytes)")
