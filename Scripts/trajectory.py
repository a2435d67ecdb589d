"""Trajectory check: the original MaxQ code (PyTorch) and `maxq replay` from the same initial
weights on the same fixed batches; writes both per-step losses to a CSV and plots them in one SVG.

A development tool (needs PyTorch, torchvision and a checkout of the original code); the tests
never run it. Example, from the repository root after `swift build -c release`:

    pip install torch torchvision
    python3 Scripts/trajectory.py --original /path/to/MaxQ --data /tmp/cifar --steps 100 \
        --conv-bn-type SoftMaxQConv2DBN --out docs/trajectory

The batches are drawn once with the original's CIFAR transforms (RandomCrop(32, padding=4),
flip, normalisation) and stored, so both sides see identical pixels in identical order.
"""
import argparse, os, subprocess, sys
import numpy as np
import torch
import torch.nn as nn
from fixture_io import write_safetensors

# Our names for the original's conv-bn classes.
ORIGINAL_TYPES = {
    "SoftMaxQConv2DBN": "SoftMaxQConv2DBNV2Pro",
    "HardMaxQConv2DBN": "HardMaxQConv2DBNV2Pro",
    "SoftSRSTEConv2dBN": "SoftSRSTEConv2dBN",
    "HardSRSTEConv2dBN": "HardSRSTEConv2dBN",
    "DenseConv2dBN": "DenseConv2dBN",
}


def fixed_batches(data, batch_size, steps, seed):
    import torchvision
    from torchvision import transforms
    normalize = transforms.Normalize(mean=[0.491, 0.482, 0.447], std=[0.247, 0.243, 0.262])
    dataset = torchvision.datasets.ImageFolder(
        os.path.join(data, "train"),
        transforms.Compose([transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(),
                            transforms.ToTensor(), normalize]))
    torch.manual_seed(seed)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=2,
                                         generator=torch.Generator().manual_seed(seed))
    batches = []
    for images, labels in loader:
        batches.append((images, labels))
        if len(batches) == steps:
            break
    return batches, len(dataset.classes)


def original_model(args, classes):
    sys.path.insert(0, args.original)
    import models
    from utils.builder import get_builder
    from utils.net_utils import init_N_M_and_mask, init_prune_schedule, update_epoch
    from functools import partial
    builder_args = argparse.Namespace(conv_bn_type=ORIGINAL_TYPES[args.conv_bn_type], nonlinearity="relu")
    torch.manual_seed(args.seed)
    model = models.__dict__[args.arch](num_classes=classes, builder=get_builder(builder_args))
    model.apply(partial(init_N_M_and_mask, N=args.N, M=args.M))
    model.apply(partial(init_prune_schedule, prune_schedule="linear"))
    model.apply(partial(update_epoch, cur_epoch=0, total_epoch=1, decay_start=0, decay_end=0))
    return model


def original_optimizer(model, args):
    """The original's SGD and parameter groups (no weight decay on 1-D parameters if asked)."""
    parameters = list(model.named_parameters())
    one_d = [v for n, v in parameters if len(v.shape) == 1]
    rest = [v for n, v in parameters if len(v.shape) != 1]
    return torch.optim.SGD([{"params": one_d, "weight_decay": 0 if args.no_bn_decay == "True" else args.wd},
                            {"params": rest, "weight_decay": args.wd}],
                           args.lr, momentum=0.9, weight_decay=args.wd, nesterov=args.nesterov == "True")


def original_step(model, optimizer, images, labels, args):
    """The original's train_engine step without CUDA: autocast and the gradient scaler do nothing
    on a CPU, so it is forward (masks recomputed), loss, backward, SR-STE decay, SGD."""
    from utils.net_utils import do_grad_decay_v1
    from functools import partial
    loss = nn.functional.cross_entropy(model(images), labels, label_smoothing=args.label_smoothing)
    optimizer.zero_grad()
    loss.backward()
    model.apply(partial(do_grad_decay_v1, decay=args.decay))
    optimizer.step()
    return loss.item()


def train_original(model, batches, args):
    optimizer = original_optimizer(model, args)
    model.train()
    losses = []
    for step, (images, labels) in enumerate(batches):
        losses.append(original_step(model, optimizer, images, labels, args))
        print(f"original step {step}\tloss {losses[-1]:.6f}", flush=True)
    return losses


def svg(path, title, ours, original, spreads):
    width, height, pad = 760, 420, 50
    steps = len(ours)
    top = max(max(ours), max(original), *(max(s) for s in spreads)) * 1.05

    def xy(i, v):
        return pad + (width - 2 * pad) * i / max(steps - 1, 1), height - pad - (height - 2 * pad) * v / top

    def line(values, colour, dash=""):
        points = " ".join(f"{x:.1f},{y:.1f}" for x, y in (xy(i, v) for i, v in enumerate(values)))
        return f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" {dash} points="{points}"/>'
    ticks = "".join(
        f'<text x="{pad - 8}" y="{xy(0, v)[1] + 4:.1f}" text-anchor="end" font-size="11">{v:.1f}</text>'
        for v in np.linspace(0, top, 6))
    moved = "".join(line(s, "#999999", 'stroke-dasharray="4 3"') for s in spreads)
    legend = [("#d62728", "original (PyTorch)"), ("#1f77b4", "maxq replay")]
    if spreads:
        legend.append(("#999999", "original from weights moved by 1e-7"))
    labels = "".join(f'<text x="{width - pad}" y="{pad + 16 * k}" text-anchor="end" font-size="12" fill="{c}">{t}</text>'
                     for k, (c, t) in enumerate(legend))
    with open(path, "w") as f:
        f.write(f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif">'
                f'<rect width="100%" height="100%" fill="white"/>'
                f'<text x="{width / 2}" y="22" text-anchor="middle" font-size="14">{title}</text>'
                f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" stroke="black"/>'
                f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{height - pad}" stroke="black"/>{ticks}'
                f'<text x="{width / 2}" y="{height - 12}" text-anchor="middle" font-size="12">step (0..{steps - 1})</text>'
                f'{moved}{line(original, "#d62728")}{line(ours, "#1f77b4")}{labels}</svg>\n')


def add_training_arguments(p, steps):
    """The original checkout, the data and the training settings both trajectory scripts take."""
    p.add_argument("--original", required=True, help="checkout of the original MaxQ code")
    p.add_argument("--data", required=True, help="CIFAR-10 JPEG folders (train/<class>/...)")
    p.add_argument("--arch", default="c_resnet18")
    p.add_argument("--conv-bn-type", default="SoftMaxQConv2DBN", choices=sorted(ORIGINAL_TYPES))
    p.add_argument("--N", type=int, default=2)
    p.add_argument("--M", type=int, default=4)
    p.add_argument("--steps", type=int, default=steps)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--wd", type=float, default=1e-4)
    p.add_argument("--decay", type=float, default=2e-4)
    p.add_argument("--label-smoothing", type=float, default=0.0)
    p.add_argument("--nesterov", default="False", choices=["True", "False"])
    p.add_argument("--no-bn-decay", default="True", choices=["True", "False"])
    p.add_argument("--maxq", default=".build/release/maxq")


def run_replay(args, batch_file, init_file, classes, out_csv):
    """`maxq replay` of the stored batches from the stored initial weights, with the same settings."""
    subprocess.run([args.maxq, "replay", batch_file, "-a", args.arch, "--num-classes", str(classes),
                    "--pretrained", init_file, "--conv-bn-type", args.conv_bn_type, "--N", str(args.N),
                    "--M", str(args.M), "--increase-start", "0", "--increase-end", "0", "--lr", str(args.lr),
                    "--wd", str(args.wd), "--decay", str(args.decay), "--label-smoothing", str(args.label_smoothing),
                    "--nesterov", args.nesterov, "--no-bn-decay", args.no_bn_decay, "--out", out_csv],
                   check=True, stdout=subprocess.DEVNULL)


def store_batches(batches, path):
    """images.<i> and labels.<i> (int64), the file `maxq replay` reads."""
    write_safetensors(path, {k: v for i, (x, y) in enumerate(batches)
                             for k, v in ((f"images.{i}", x), (f"labels.{i}", y))},
                      {f"labels.{i}": "I64" for i in range(len(batches))})


def read_losses(csv_path):
    return [float(line.split(",")[1]) for line in open(csv_path).read().split("\n")[1:] if line]


def main():
    p = argparse.ArgumentParser()
    add_training_arguments(p, steps=100)
    p.add_argument("--spread", type=int, default=1,
                   help="also train the original this many times from weights moved by 1e-7 (float32 noise)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--work", default="/tmp/maxq-trajectory", help="folder for the batches and weights (large)")
    p.add_argument("--out", default="trajectory", help="writes OUT.csv and OUT.svg")
    args = p.parse_args()
    torch.set_num_threads(2)
    os.makedirs(args.work, exist_ok=True)

    batches, classes = fixed_batches(args.data, args.batch_size, args.steps, args.seed)
    batch_file = os.path.join(args.work, "batches.safetensors")
    store_batches(batches, batch_file)
    model = original_model(args, classes)
    init_file = os.path.join(args.work, "initial.safetensors")
    write_safetensors(init_file, {k: v for k, v in model.state_dict().items() if v.dtype != torch.int64})

    ours_csv = os.path.join(args.work, "ours.csv")
    run_replay(args, batch_file, init_file, classes, ours_csv)
    ours = read_losses(ours_csv)
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    original = train_original(model, batches, args)
    # The original again from weights moved by about one float32 rounding: how far two runs of
    # the same code drift apart by noise alone, the yardstick for the difference to ours.
    spreads = []
    for k in range(args.spread):
        noise = torch.Generator().manual_seed(k)
        moved = original_model(args, classes)
        moved.load_state_dict({n: v * (1 + 1e-7 * torch.randn(v.shape, generator=noise)) if n.endswith("weight") else v
                               for n, v in initial.items()})
        spreads.append(train_original(moved, batches, args))

    with open(args.out + ".csv", "w") as f:
        f.write("step,original,ours," + "".join(f"original_moved{k}," for k in range(args.spread)) + "difference\n")
        for i, (a, b) in enumerate(zip(original, ours)):
            f.write(f"{i},{a:.6f},{b:.6f}," + "".join(f"{s[i]:.6f}," for s in spreads) + f"{b - a:.6f}\n")
    svg(args.out + ".svg", f"{args.arch} {args.conv_bn_type} {args.N}:{args.M}, batch {args.batch_size}, lr {args.lr}: "
        f"training loss per step", ours, original, spreads)
    report(np.array(original), np.array(ours), [np.array(s) for s in spreads])


def report(original, ours, spreads):
    """Agreement over the first steps, and the mean difference per tenth of the run, for ours
    and for each rerun of the original from moved weights."""
    print(f"first 3 steps, |ours - original|: {' '.join(f'{d:.1e}' for d in np.abs(ours - original)[:3])}")
    chunks = np.array_split(np.arange(len(original)), 10)
    for name, other in [("ours", ours)] + [(f"original moved {k}", s) for k, s in enumerate(spreads)]:
        means = [np.mean(other[c] - original[c]) for c in chunks]
        print(f"{name} - original, mean per tenth: {' '.join(f'{m:+.3f}' for m in means)}; "
              f"overall {np.mean(other - original):+.4f}")


if __name__ == "__main__":
    main()
