#!/usr/bin/env python3
"""Reads a model written by `maxq export` (.nm.safetensors) with numpy alone, as docs/deployment.md
describes the format, and optionally checks it against the checkpoint it was exported from.

    python3 Scripts/read_nm.py MODEL.nm.safetensors [CHECKPOINT.safetensors]

Prints the metadata and per layer its kind and shape; with a checkpoint (safetensors, reference
names <unit>.conv.weight, <unit>.mask, <unit>.scale.*), compares every unit's dense folded weight
W * mask * gamma / sqrt(var + eps) and bias beta - mean * gamma / sqrt(var + eps) with the file's.
"""
import json, struct, sys
import numpy as np


def read_safetensors(path):
    data = open(path, "rb").read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", {})
    types = {"F32": "<f4", "U8": "u1"}
    tensors = {name: np.frombuffer(data[8 + n + e["data_offsets"][0]:8 + n + e["data_offsets"][1]],
                                   dtype=types[e["dtype"]]).reshape(e["shape"]) for name, e in header.items()}
    return meta, tensors


def read_nm(path):
    """(metadata, {unit: (dense folded weight, bias)}, {other tensor: array})"""
    meta, tensors = read_safetensors(path)
    assert meta["format"] == "maxq-nm" and meta["version"] == "1"
    units = {}
    for layer in json.loads(meta["layers"]):
        name, (o, i, kh, kw) = layer["name"], layer["shape"]
        if layer["kind"] == "dense":
            weight = tensors.pop(name + ".weight")
        else:
            n, m = layer["n"], layer["m"]
            bits = max(1, (m - 1).bit_length())
            values = tensors.pop(name + ".values").reshape(o, kh, kw, i // m, n)
            packed = np.unpackbits(tensors.pop(name + ".indices"), bitorder="little")
            index = packed[:values.size * bits].reshape(-1, bits) @ (1 << np.arange(bits))
            weight = np.zeros((o, kh, kw, i // m, m), np.float32)
            np.put_along_axis(weight, index.reshape(values.shape), values, axis=4)
            weight = weight.reshape(o, kh, kw, i).transpose(0, 3, 1, 2)
        units[name] = (weight, tensors.pop(name + ".bias"))
    return meta, units, tensors


def main():
    meta, units, rest = read_nm(sys.argv[1])
    print({k: v for k, v in meta.items() if k != "layers"})
    print(f"{len(units)} units, {len(rest)} other tensors")
    if len(sys.argv) < 3:
        return
    _, checkpoint = read_safetensors(sys.argv[2])
    worst = 0.0
    for name, (weight, bias) in units.items():
        scale = {k: checkpoint[f"{name}.scale.{k}"] for k in ("weight", "bias", "running_mean", "running_var")}
        factor = scale["weight"] / np.sqrt(scale["running_var"] + 1e-5)
        w = checkpoint[f"{name}.conv.weight"] * checkpoint.get(f"{name}.mask", 1.0) * factor[:, None, None, None]
        b = scale["bias"] - scale["running_mean"] * factor
        worst = max(worst, np.abs(w - weight).max() / np.abs(w).max(), np.abs(b - bias).max() / np.abs(b).max())
    print(f"largest relative difference from the checkpoint's folding: {worst:.2e}")


if __name__ == "__main__":
    main()
