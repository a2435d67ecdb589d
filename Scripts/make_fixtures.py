"""Writes the PyTorch parity fixtures that the Swift tests read (Tests/Fixtures/).

Run by hand with PyTorch installed (a development tool only; the tests never need Python):

    pip install torch
    python3 Scripts/make_fixtures.py

Each file is safetensors with the operation's inputs, outputs and gradients: for an output y
the seed `dy` is random and every gradient is d(sum(y * dy))/d(input).
"""
import json, os
import numpy as np
import torch
import torch.nn.functional as F
from fixture_io import write_safetensors

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "Fixtures")
torch.manual_seed(0)


def save(name, tensors, dtypes=None):
    write_safetensors(os.path.normpath(os.path.join(OUT, "ops", name + ".safetensors")), tensors, dtypes)


def grads(y, inputs):
    dy = torch.randn_like(y)
    gs = torch.autograd.grad(y, inputs, dy)
    return dy, gs


def conv_fixtures():
    cases = {
        "conv_3x3": (2, 4, 9, 6, 3, 1, 1, 1),
        "conv_3x3_stride2": (2, 4, 9, 6, 3, 2, 1, 1),
        "conv_1x1": (2, 8, 5, 4, 1, 1, 0, 1),
        "conv_7x7_stem": (1, 3, 16, 4, 7, 2, 3, 1),
        "conv_grouped": (2, 4, 7, 6, 3, 1, 1, 2),
        "conv_depthwise": (2, 6, 8, 6, 3, 2, 1, 6),
    }
    for name, (n, c, h, o, k, s, p, g) in cases.items():
        x = torch.randn(n, c, h, h, requires_grad=True)
        w = torch.randn(o, c // g, k, k, requires_grad=True)
        y = F.conv2d(x, w, stride=s, padding=p, groups=g)
        dy, (dx, dw) = grads(y, [x, w])
        save(name, {"x": x, "w": w, "y": y, "dy": dy, "dx": dx, "dw": dw,
                    "geometry": torch.tensor([s, p, g], dtype=torch.float32)})


def batchnorm_fixtures():
    x = (torch.randn(3, 5, 4, 4) * 2 + 0.5).requires_grad_()
    weight = torch.randn(5, requires_grad=True)
    bias = torch.randn(5, requires_grad=True)
    rm, rv = torch.randn(5) * 0.1, torch.rand(5) + 0.5
    rm0, rv0 = rm.clone(), rv.clone()
    y = F.batch_norm(x, rm, rv, weight, bias, training=True, momentum=0.1, eps=1e-5)
    dy, (dx, dwt, db) = grads(y, [x, weight, bias])
    save("batchnorm_train", {"x": x, "weight": weight, "bias": bias, "running_mean_before": rm0,
                             "running_var_before": rv0, "running_mean_after": rm, "running_var_after": rv,
                             "y": y, "dy": dy, "dx": dx, "dweight": dwt, "dbias": db})
    y = F.batch_norm(x, rm, rv, weight, bias, training=False, eps=1e-5)
    dy, (dx, dwt, db) = grads(y, [x, weight, bias])
    save("batchnorm_eval", {"x": x, "weight": weight, "bias": bias, "running_mean": rm, "running_var": rv,
                            "y": y, "dy": dy, "dx": dx, "dweight": dwt, "dbias": db})


def pointwise_fixtures():
    # Values spread over every piece of the piecewise activations, kinks included.
    x = torch.cat([torch.linspace(-8, 8, 61), torch.tensor([-3.0, 0.0, 3.0, 6.0])]).reshape(1, 5, 13, 1)
    x.requires_grad_()
    for name, fn in [("relu", F.relu), ("relu6", F.relu6), ("hardswish", F.hardswish),
                     ("hardsigmoid", F.hardsigmoid), ("sigmoid", torch.sigmoid)]:
        y = fn(x)
        dy, (dx,) = grads(y, [x])
        save("activation_" + name, {"x": x, "y": y, "dy": dy, "dx": dx})
    a = torch.randn(2, 3, 4, 5, requires_grad=True)
    for name, shape in [("same", (2, 3, 4, 5)), ("nc11", (2, 3, 1, 1)), ("1c11", (1, 3, 1, 1))]:
        b = torch.randn(*shape, requires_grad=True)
        y = a + b
        dy, (da, db) = grads(y, [a, b])
        save("add_" + name, {"a": a, "b": b, "y": y, "dy": dy, "da": da, "db": db})
        y = a * b
        dy, (da, db) = grads(y, [a, b])
        save("multiply_" + name, {"a": a, "b": b, "y": y, "dy": dy, "da": da, "db": db})


def pooling_linear_loss_fixtures():
    x = torch.randn(2, 3, 9, 9, requires_grad=True)
    y = F.max_pool2d(x, 3, 2, 1)
    dy, (dx,) = grads(y, [x])
    save("max_pool", {"x": x, "y": y, "dy": dy, "dx": dx})
    y = F.adaptive_avg_pool2d(x, 1).flatten(1)
    dy, (dx,) = grads(y, [x])
    save("global_avg_pool", {"x": x, "y": y, "dy": dy, "dx": dx})
    x = torch.randn(4, 7, requires_grad=True)
    w = torch.randn(5, 7, requires_grad=True)
    b = torch.randn(5, requires_grad=True)
    y = F.linear(x, w, b)
    dy, (dx, dw, db) = grads(y, [x, w, b])
    save("linear", {"x": x, "w": w, "b": b, "y": y, "dy": dy, "dx": dx, "dw": dw, "db": db})
    logits = (torch.randn(6, 10) * 3).requires_grad_()
    labels = torch.tensor([0, 3, 9, 3, 5, 1])
    for smoothing in (0.0, 0.1):
        loss = F.cross_entropy(logits, labels, label_smoothing=smoothing)
        (dl,) = torch.autograd.grad(loss, [logits])
        save(f"cross_entropy_{int(smoothing * 10)}", {"logits": logits, "labels": labels, "loss": loss.reshape(1),
                                                      "dlogits": dl}, {"labels": "I64"})
    _, top = logits.topk(5, 1)
    hits = top.eq(labels.view(-1, 1))
    save("topk", {"logits": logits, "labels": labels,
                  "top1": hits[:, :1].float().sum().mul(100 / 6).reshape(1),
                  "top5": hits[:, :5].float().sum().mul(100 / 6).reshape(1)}, {"labels": "I64"})


def sgd_fixture():
    w0 = torch.randn(3, 4)
    steps = [torch.randn(3, 4) for _ in range(3)]
    out = {"w0": w0}
    for i, g in enumerate(steps):
        out[f"grad{i}"] = g
    for nesterov in (False, True):
        w = w0.clone().requires_grad_()
        opt = torch.optim.SGD([w], lr=0.1, momentum=0.9, weight_decay=1e-4, nesterov=nesterov)
        for g in steps:
            w.grad = g.clone()
            opt.step()
        out["nesterov" if nesterov else "plain"] = w
    save("sgd", out)


def dtype_fixture():
    t = torch.tensor([[1.5, -2.25, 0.0], [3.0, 65504.0, -0.125]])
    save("dtypes", {"f32": t, "f16": t, "bf16": t, "i64": torch.tensor([[1, -2, 3], [4, 5, -6]])},
         {"f16": "F16", "bf16": "BF16", "i64": "I64"})


def xoshiro_fixture():
    """First outputs of our generator (SplitMix64 seeding, xoshiro256**) for seed 42, computed
    independently here so the Swift implementation is checked against the published algorithm."""
    mask = (1 << 64) - 1
    sm = 42
    state = []
    for _ in range(4):
        sm = (sm + 0x9E3779B97F4A7C15) & mask
        z = sm
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        state.append(z ^ (z >> 31))
    rotl = lambda x, k: ((x << k) | (x >> (64 - k))) & mask
    outputs = []
    for _ in range(8):
        s0, s1, s2, s3 = state
        outputs.append(str(rotl((s1 * 5) & mask, 7) * 9 & mask))
        t = (s1 << 17) & mask
        s2 ^= s0; s3 ^= s1; s1 ^= s2; s0 ^= s3; s2 ^= t; s3 = rotl(s3, 45)
        state = [s0, s1, s2, s3]
    with open(os.path.join(OUT, "xoshiro_seed42.json"), "w") as f:
        json.dump({"seed": 42, "outputs": outputs}, f, indent=1)


def tiny_network_fixture():
    """A whole-model check: conv-bn-relu, max-pool, residual conv-bn, depthwise conv-bn with
    hardswish, global pool, linear; label-smoothed loss; three SGD steps."""
    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = torch.nn.Conv2d(3, 8, 3, padding=1, bias=False); self.bn1 = torch.nn.BatchNorm2d(8)
            self.conv2 = torch.nn.Conv2d(8, 8, 3, padding=1, bias=False); self.bn2 = torch.nn.BatchNorm2d(8)
            self.conv3 = torch.nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8, bias=False); self.bn3 = torch.nn.BatchNorm2d(8)
            self.fc = torch.nn.Linear(8, 5)

        def forward(self, x):
            h = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
            h = F.relu(self.bn2(self.conv2(h)) + h)
            h = F.hardswish(self.bn3(self.conv3(h)))
            return self.fc(F.adaptive_avg_pool2d(h, 1).flatten(1))

    model = Tiny()
    x = torch.randn(4, 3, 12, 12)
    labels = torch.tensor([0, 4, 2, 2])
    state = {k: v.clone() for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    out = {"x": x, "labels": labels}
    out.update({"initial." + k: v for k, v in state.items()})
    for step in range(3):
        opt.zero_grad()
        logits = model(x)
        loss = F.cross_entropy(logits, labels, label_smoothing=0.1)
        loss.backward()
        if step == 0:
            out["logits0"] = logits
            out.update({"grad0." + n: p.grad for n, p in model.named_parameters()})
        out[f"loss{step}"] = loss.reshape(1)
        opt.step()
    out.update({"final." + k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")})
    save("tiny_network", out, {"labels": "I64"})


def checkpoint_fixtures():
    """A checkpoint written by torch.save holding what state dicts hold (prefixes, a strided
    view, fp16, bf16, int64, an optimizer with lists, None and booleans), the values it must
    load as, and a pickle that tries to run code."""
    from collections import OrderedDict
    import pickle, subprocess, zipfile
    base = torch.arange(20.0).reshape(4, 5)
    sd = OrderedDict()
    sd["module.conv.weight"] = torch.randn(4, 3, 3, 3)
    sd["module.fc.weight"] = torch.randn(3, 5).t()
    sd["module.slice"] = base[1:3, ::2]
    sd["module.half"] = torch.randn(6).half()
    sd["module.bf16"] = torch.randn(6).bfloat16()
    sd["module.bn.num_batches_tracked"] = torch.tensor(7)
    optimizer = {"state": {0: {"momentum_buffer": torch.ones(2)}},
                 "param_groups": [{"lr": 0.1, "nesterov": False, "params": [0, 1], "foreach": None}]}
    torch.save({"epoch": 3, "arch": "tiny", "state_dict": sd, "best_acc1": 12.5, "optimizer": optimizer},
               os.path.join(OUT, "checkpoints", "torch_saved.pth.tar"))
    save_to = os.path.join(OUT, "checkpoints")
    expected = {k[len("module."):]: v.float().contiguous() for k, v in sd.items()}
    path = os.path.join(save_to, "torch_saved_expected.safetensors")
    save("../checkpoints/torch_saved_expected", expected)

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo this must never run",))
    with zipfile.ZipFile(os.path.join(save_to, "evil.pth"), "w", zipfile.ZIP_STORED) as z:
        z.writestr("evil/data.pkl", pickle.dumps({"state_dict": Evil()}, protocol=2))
        z.writestr("evil/version", "3\n")

    # The other direction: our writer, read back by torch.load (weights_only, the default).
    maxq = os.path.join(os.path.dirname(OUT), "..", ".build", "debug", "maxq")
    written = "/tmp/maxq_roundtrip.pth.tar"
    subprocess.run([maxq, "convert", path, "--out", written, "--arch", "tiny"], check=True)
    loaded = torch.load(written)
    assert loaded["arch"] == "tiny" and set(loaded["state_dict"]) == set(expected)
    for k, v in expected.items():
        assert torch.equal(loaded["state_dict"][k], v), k
    print("round trip: torch.load reads maxq's checkpoint, all", len(expected), "tensors equal")


def transform_fixtures():
    """Small images and what torchvision + Pillow make of them: the validation transform at a
    reduced size (Resize(16), CenterCrop(14)) and a crop-resize like RandomResizedCrop's."""
    from PIL import Image
    import numpy
    import torchvision.transforms as T
    import torchvision.transforms.functional as TF
    rng = numpy.random.default_rng(0)
    smooth = lambda h, w: (numpy.stack(numpy.meshgrid(numpy.linspace(0, 255, w), numpy.linspace(0, 255, h)), -1).sum(-1) / 2
                           + rng.integers(0, 60, (h, w)))
    rgb = numpy.stack([smooth(37, 23), smooth(37, 23)[::-1], rng.integers(0, 255, (37, 23))], -1).clip(0, 255).astype("uint8")
    images = {
        "photo.jpg": Image.fromarray(rgb),
        "wide.png": Image.fromarray(rgb.transpose(1, 0, 2).copy()),
        "alpha.png": Image.fromarray(numpy.dstack([rgb, rng.integers(0, 255, (37, 23))]).astype("uint8"), "RGBA"),
        "gray.png": Image.fromarray(rgb[:, :, 0]),
    }
    normalize = T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    out = {}
    for name, image in images.items():
        path = os.path.join(OUT, "images", name)
        image.save(path, quality=90) if name.endswith(".jpg") else image.save(path)
        loaded = Image.open(path).convert("RGB")
        key = name.replace(".", "_")
        out[key + ".decoded"] = torch.tensor(numpy.asarray(loaded)).float()
        out[key + ".val"] = normalize(T.ToTensor()(T.CenterCrop(14)(T.Resize(16)(loaded))))
        crop = TF.resized_crop(loaded, 3, 2, 19, 11, [13, 17], interpolation=T.InterpolationMode.BILINEAR)
        out[key + ".crop"] = T.ToTensor()(crop)
    save("../images/expected", out)


def formula(name, shape):
    """Deterministic weights both sides can compute: a sine of the element index, salted by
    the tensor's (torchvision) name; BatchNorm scales and variances kept positive."""
    import math
    n = 1
    for d in shape:
        n *= d
    values = [math.sin(i * 0.37 + len(name) * 1.3) for i in range(n)]
    if name.endswith("running_var"):
        values = [1 + 0.5 * v for v in values]
    elif name.endswith("num_batches_tracked"):
        values = [0.0 for _ in values]
    elif len(shape) == 1 and name.endswith("weight"):
        values = [1 + 0.1 * v for v in values]
    else:
        values = [0.05 * v for v in values]
    return torch.tensor(values, dtype=torch.float64).float().reshape(shape)


class Unit(torch.nn.Module):
    """The reference's dense conv-bn unit: `conv` (no bias, padding k/2) then `scale`."""
    def __init__(self, i, o, k, s=1):
        super().__init__()
        self.conv = torch.nn.Conv2d(i, o, k, s, k // 2, bias=False)
        self.scale = torch.nn.BatchNorm2d(o)

    def forward(self, x):
        return self.scale(self.conv(x))


class CifarBasicBlock(torch.nn.Module):
    def __init__(self, i, planes, s):
        super().__init__()
        self.convbn1, self.convbn2 = Unit(i, planes, 3, s), Unit(planes, planes, 3)
        self.shortcut = torch.nn.Sequential(Unit(i, planes, 1, s)) if s != 1 or i != planes else torch.nn.Sequential()

    def forward(self, x):
        return F.relu(self.convbn2(F.relu(self.convbn1(x))) + self.shortcut(x))


class CifarResNet18(torch.nn.Module):
    """docs/models.md's c_resnet18, written out in PyTorch with the reference's names."""
    def __init__(self, classes):
        super().__init__()
        self.conv1, self.bn1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False), torch.nn.BatchNorm2d(64)
        i = 64
        for s, planes in enumerate([64, 128, 256, 512]):
            blocks = []
            for j in range(2):
                blocks.append(CifarBasicBlock(i, planes, 2 if j == 0 and s > 0 else 1))
                i = planes
            setattr(self, f"layer{s + 1}", torch.nn.Sequential(*blocks))
        self.fc = torch.nn.Conv2d(512, classes, 1)

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        h = self.layer4(self.layer3(self.layer2(self.layer1(h))))
        return self.fc(F.adaptive_avg_pool2d(h, 1)).flatten(1)


class MobileNetV1(torch.nn.Module):
    """docs/models.md's mobilenet_v1 with the reference's names."""
    def __init__(self, classes):
        super().__init__()
        self.conv1 = torch.nn.Sequential(torch.nn.Conv2d(3, 32, 3, 2, 1, bias=False), torch.nn.BatchNorm2d(32), torch.nn.ReLU())
        table = [64, (128, 2), 128, (256, 2), 256, (512, 2), 512, 512, 512, 512, 512, (1024, 2), 1024]
        layers, i = [], 32
        for entry in table:
            o, s = entry if isinstance(entry, tuple) else (entry, 1)
            layers.append(torch.nn.Sequential(torch.nn.Conv2d(i, i, 3, s, 1, groups=i, bias=False), torch.nn.BatchNorm2d(i),
                                              torch.nn.ReLU(), Unit(i, o, 1), torch.nn.ReLU()))
            i = o
        self.features = torch.nn.Sequential(*layers)
        self.fc = torch.nn.Linear(1024, classes)

    def forward(self, x):
        return self.fc(F.adaptive_avg_pool2d(self.features(self.conv1(x)), 1).flatten(1))


def model_fixtures():
    """Whole-model checks: torchvision models (and the reference's own c_resnet18 and
    mobilenet_v1, written out above) filled with `formula` weights, their logits in evaluation
    mode on a formula input, and their state-dict names and shapes."""
    import torchvision
    builders = {name: (lambda n=name: torchvision.models.__dict__[n](num_classes=10))
                for name in ["resnet18", "resnet34", "resnet50", "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large"]}
    builders["c_resnet18"] = lambda: CifarResNet18(10)
    builders["mobilenet_v1"] = lambda: MobileNetV1(10)
    for arch, build in builders.items():
        model = build().eval()
        state = model.state_dict()
        model.load_state_dict({k: formula(k, tuple(v.shape)).to(v.dtype) for k, v in state.items()})
        x = formula("input", (2, 3, 64, 64)) * 20
        with torch.no_grad():
            logits = model(x)
        save(f"../models/{arch}", {"logits": logits})
        with open(os.path.join(OUT, "models", f"{arch}.keys.json"), "w") as f:
            json.dump([[k, list(v.shape)] for k, v in state.items()], f)


if __name__ == "__main__":
    conv_fixtures()
    batchnorm_fixtures()
    pointwise_fixtures()
    pooling_linear_loss_fixtures()
    sgd_fixture()
    dtype_fixture()
    xoshiro_fixture()
    tiny_network_fixture()
    checkpoint_fixtures()
    transform_fixtures()
    model_fixtures()
    print("fixtures written to", os.path.normpath(OUT))
