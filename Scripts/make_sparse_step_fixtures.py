"""Writes the sparse step-parity fixtures (Tests/Fixtures/steps/): SGD steps of the original
code's sparse training (Scripts/reference_nm.py) on narrow c_resnet18 and mobilenet_v1 models.

Run by hand with PyTorch installed (the tests never need Python):

    python3 Scripts/make_sparse_step_fixtures.py

Each file holds the settings (its metadata), the two batches, the initial state and, after the
steps (c_resnet18: three, on batches 0, 1, 0; mobilenet_v1: one), every parameter, momentum
buffer, mask and BatchNorm running statistic.
"""
import json, os
from functools import partial
import torch
import reference_nm as ref
from fixture_io import write_safetensors

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "Fixtures", "steps")
SETTINGS = {
    "lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4, "nesterov": True, "no_bn_decay": True, "label_smoothing": 0.1,
    "decay": 2e-4, "N": 2, "M": 4,
    # A linear incremental schedule over epochs 0..4, in epoch 2: half of the groups stay dense.
    "prune_schedule": "linear", "increase_start": 0, "increase_end": 4, "epoch": 2,
}
MODELS = {
    # name: (builder, width divisor, classes, batch, resolution, batches of the steps)
    "c_resnet18": (ref.CifarResNet18, 16, 10, 8, 32, [0, 1, 0]),
    # One step only: the narrow MobileNet V1 (no residuals, batch-norm channels of nearly
    # constant value at 1x1 resolution) turns float32 rounding into per-cent differences of some
    # gradients within one step and into different masks by the second, in PyTorch itself
    # (float32 against float64, or 1 thread against 2); three steps would compare noise.
    "mobilenet_v1": (ref.MobileNetV1, 8, 10, 8, 32, [0]),
}


def run(arch, kind, seed, dtype=torch.float32):
    """Three steps from the weights and batches `seed` draws, computed in `dtype`. Returns the
    tensors to store (float32 either way) and the preserve rate."""
    build, divisor, classes, batch, resolution, steps = MODELS[arch]
    s = SETTINGS
    torch.manual_seed(seed)
    model = build(partial(ref.ConvBN, kind, n=s["N"], m=s["M"]), classes, divisor)
    batches = [(torch.randn(batch, 3, resolution, resolution), torch.randint(0, classes, (batch,))) for _ in range(2)]
    model = model.to(dtype)
    rate = max(min(1 - (s["epoch"] - s["increase_start"]) / (s["increase_end"] - s["increase_start"]), 1), 0)
    for unit in ref.units(model):
        unit.preserve_rate = rate
        unit.mask.data = unit.compute_mask()
    out = {}
    for i, (x, y) in enumerate(batches):
        out[f"images.{i}"], out[f"labels.{i}"] = x, y
    state = lambda: {k: v.float().clone() for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    out.update({"initial." + k: v for k, v in state().items()})
    optimizer = ref.sgd(model, s["lr"], s["momentum"], s["weight_decay"], s["nesterov"], s["no_bn_decay"])
    for step, b in enumerate(steps):
        x, y = batches[b]
        loss = ref.train_step(model, optimizer, x.to(dtype), y, s["label_smoothing"], s["decay"])
        out[f"loss.{step}"] = torch.tensor([loss])
    out.update({"final." + k: v for k, v in state().items()})
    names = {id(p): n for n, p in model.named_parameters()}
    for p, st in optimizer.state.items():
        out["momentum." + names[id(p)]] = st["momentum_buffer"].float()
    return out, rate


def rounding_effects(arch, kind, seed, out):
    """Per stored tensor, how far float32 rounding moves it, relative to its largest magnitude:
    PyTorch's float32 run against the same run in float64."""
    exact, _ = run(arch, kind, seed, torch.float64)
    return {k: (exact[k] - v).abs().max().item() / max(v.abs().max().item(), 1e-12)
            for k, v in out.items() if k.startswith(("final.", "momentum."))}


def fixture(arch, kind, first_seed, tries=30):
    """The first seed whose result float32 rounding moves by less than 1e-5 everywhere: with
    batches of 8, a single activation crossing zero or a mask tie moves some gradients by per
    cents, and a fixture sitting on such a kink would test the order of floating-point sums, not
    the code. Where no seed qualifies (MobileNet V1, whose one step stays noisy in a few
    batch-norm weight gradients), the tensors that rounding moves by more than 2.5e-5 carry that
    amount in the metadata (`float32_effect`), and the test allows them 4 times as much."""
    best = None
    for seed in range(first_seed, first_seed + 100 * tries, 100):
        out, rate = run(arch, kind, seed)
        effects = rounding_effects(arch, kind, seed, out)
        if best is None or max(effects.values()) < max(best[2].values()):
            best = (seed, out, effects, rate)
        if max(effects.values()) < 1e-5:
            break
    seed, out, effects, rate = best
    noisy = {k: float(f"{v:.2e}") for k, v in effects.items() if v > 2.5e-5}
    metadata = dict(SETTINGS, arch=arch, conv_bn_type=kind, width_divisor=MODELS[arch][1], classes=MODELS[arch][2],
                    preserve_rate=rate, seed=seed, steps=",".join(map(str, MODELS[arch][5])),
                    float32_effect=json.dumps(noisy, sort_keys=True))
    path = os.path.normpath(os.path.join(OUT, f"{arch}.{kind}.safetensors"))
    write_safetensors(path, out, {f"labels.{i}": "I64" for i in range(2)}, metadata)
    print(f"{path}: seed {seed}, float32 rounding moves it by up to {max(effects.values()):.1e} "
          f"({len(noisy)} tensors above 2.5e-5), losses {[round(out[k].item(), 5) for k in out if k.startswith('loss.')]}")


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    torch.set_num_threads(2)
    for seed, (arch, kind) in enumerate((a, k) for a in MODELS for k in ("SoftMaxQConv2DBN", "SoftSRSTEConv2dBN")):
        fixture(arch, kind, seed)
