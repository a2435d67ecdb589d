"""Writes PyTorch CPU-autocast (bfloat16) fixtures for the mixed-precision tests (Tests/Fixtures/ops/autocast_*).

Run by hand with PyTorch installed (a development tool only; the tests never need Python):

    pip install torch
    python3 Scripts/make_autocast_fixtures.py

Each file holds float32 inputs x, w (and b), a float32 seed dy, and what
`torch.autocast("cpu", dtype=torch.bfloat16)` computes from them: the bf16 output y (stored as
float32) and the float32 gradients dx, dw of sum(y * dy).
"""
import os
import torch
import torch.nn.functional as F
from fixture_io import write_safetensors

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "Fixtures", "ops")
torch.manual_seed(11)


def save(name, tensors):
    write_safetensors(os.path.join(OUT, f"autocast_{name}.safetensors"), tensors)


def conv_fixtures():
    # (batch, in, size, out, kernel, stride, padding, groups)
    cases = {
        "conv_3x3": (2, 16, 9, 32, 3, 1, 1, 1),
        "conv_1x1_stride2": (2, 32, 8, 16, 1, 2, 0, 1),
        "conv_7x7_stem": (1, 3, 20, 8, 7, 2, 3, 1),
        "conv_depthwise": (2, 16, 8, 16, 3, 2, 1, 16),
    }
    for name, (n, c, h, o, k, s, p, g) in cases.items():
        x = torch.randn(n, c, h, h, requires_grad=True)
        w = torch.randn(o, c // g, k, k, requires_grad=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = F.conv2d(x, w, stride=s, padding=p, groups=g)
        assert y.dtype == torch.bfloat16
        dy = torch.randn(y.shape)
        dx, dw = torch.autograd.grad(y, [x, w], dy)
        save(name, {"x": x, "w": w, "y": y.float(), "dy": dy, "dx": dx, "dw": dw,
                    "geometry": torch.tensor([s, p, g], dtype=torch.float32)})


def linear_fixture():
    x = torch.randn(4, 64, requires_grad=True)
    w = torch.randn(10, 64, requires_grad=True)
    b = torch.randn(10, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = F.linear(x, w, b)
    assert y.dtype == torch.bfloat16
    dy = torch.randn(y.shape)
    dx, dw, db = torch.autograd.grad(y, [x, w, b], dy)
    save("linear", {"x": x, "w": w, "b": b, "y": y.float(), "dy": dy, "dx": dx, "dw": dw, "db": db})


if __name__ == "__main__":
    conv_fixtures()
    linear_fixture()
    print("autocast fixtures written to", os.path.normpath(OUT))
