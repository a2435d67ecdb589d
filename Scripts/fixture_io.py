"""Shared by the fixture scripts: a minimal safetensors writer and reader (numpy; torch for tensors)."""
import json, struct
import numpy as np


def write_raw(path, entries, metadata=None):
    """entries: name -> (dtype string, shape, little-endian bytes); `metadata` values become strings."""
    header, blobs, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = {k: str(v) for k, v in metadata.items()}
    for key, (dtype, shape, raw) in entries.items():
        header[key] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    js = json.dumps(header).encode()
    js += b" " * ((8 - len(js) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(js)) + js + b"".join(blobs))


def write_safetensors(path, tensors, dtypes=None, metadata=None):
    """Torch tensors, F32 unless `dtypes` names F16, BF16 or I64 for a key."""
    import torch
    dtypes = dtypes or {}
    entries = {}
    for key, value in tensors.items():
        t = value.detach().contiguous()
        dtype = dtypes.get(key, "F32")
        if dtype == "F32":
            raw = t.to(torch.float32).numpy().tobytes()
        elif dtype == "F16":
            raw = t.to(torch.float16).numpy().tobytes()
        elif dtype == "BF16":
            raw = t.to(torch.bfloat16).view(torch.int16).numpy().tobytes()
        else:
            raw = t.to(torch.int64).numpy().tobytes()
        entries[key] = (dtype, t.shape, raw)
    write_raw(path, entries, metadata)


def read_safetensors(path):
    """name -> torch tensor (F32 and I64 only)."""
    data = open(path, "rb").read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    out = {}
    for key, v in header.items():
        if key == "__metadata__":
            continue
        start, end = v["data_offsets"]
        dtype = {"F32": np.float32, "I64": np.int64}[v["dtype"]]
        import torch
        out[key] = torch.from_numpy(np.frombuffer(data[8 + n + start:8 + n + end], dtype=dtype).reshape(v["shape"]).copy())
    return out
