"""The PyTorch side of `maxq bench`, to run on the same machine in the same session (docs/performance.md).

    pip install torch torchvision          # a development tool; the toolkit never needs Python
    python3 Scripts/bench_pytorch.py ops                      # as `maxq bench ops`
    python3 Scripts/bench_pytorch.py model resnet50 -b 16     # as `maxq bench train-step` and `maxq bench eval`
    python3 Scripts/bench_pytorch.py model resnet50 -b 16 --amp bf16   # as the same with `--amp bf16`

`ops` times the layer shapes `maxq bench ops` times (batch 32, forward and forward+backward);
`model` times whole training steps (forward, cross-entropy with label smoothing 0.1, backward,
SGD with momentum 0.9 and weight decay 1e-4) and evaluation of a torchvision model on random
input; `--amp bf16` runs forward and loss under `torch.autocast("cpu", dtype=torch.bfloat16)`, as
`maxq ... --amp bf16` does. Every figure is the median of the timed repetitions after one untimed warm-up.
"""
import argparse, statistics, time
import torch
import torch.nn.functional as F

# (name, input channels, spatial size, output channels, kernel, stride, groups): Sources/maxq/Bench.swift's cases.
OPS = [("conv3x3 64->64 56x56", 64, 56, 64, 3, 1, 1), ("conv1x1 256->64 56x56", 256, 56, 64, 1, 1, 1),
       ("conv1x1 64->256 56x56", 64, 56, 256, 1, 1, 1), ("conv3x3 128->128 s2 56x56", 128, 56, 128, 3, 2, 1),
       ("conv3x3 512->512 7x7", 512, 7, 512, 3, 1, 1), ("depthwise3x3 128 112x112", 128, 112, 128, 3, 1, 128)]


def median_seconds(work, repeats):
    work()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def bench_ops(args):
    for name, c, size, o, k, stride, groups in OPS:
        x = torch.randn(args.batch_size, c, size, size, requires_grad=True)
        w = torch.randn(o, c // groups, k, k, requires_grad=True)

        def forward():
            return F.conv2d(x, w, stride=stride, padding=k // 2, groups=groups)
        dy = torch.randn_like(forward())

        def forward_backward():
            x.grad = w.grad = None
            forward().backward(dy)
        print(f"{name:28s} forward {1000 * median_seconds(forward, args.repeats):8.2f} ms   "
              f"forward+backward {1000 * median_seconds(forward_backward, args.repeats):8.2f} ms")
    x = torch.randn(args.batch_size, 256, 56, 56, requires_grad=True)
    weight, bias = torch.ones(256, requires_grad=True), torch.zeros(256, requires_grad=True)
    mean, var = torch.zeros(256), torch.ones(256)
    dy = torch.randn_like(x)

    def norm_relu():
        x.grad = weight.grad = bias.grad = None
        F.relu(F.batch_norm(x, mean, var, weight, bias, training=True)).backward(dy)
    print(f"{'batchnorm+relu 256 56x56':28s} forward+backward {1000 * median_seconds(norm_relu, args.repeats):8.2f} ms")


def bench_model(args):
    import torchvision
    model = torchvision.models.__dict__[args.arch](num_classes=args.classes)
    x = torch.randn(args.batch_size, 3, args.resolution, args.resolution)
    labels = torch.randint(0, args.classes, (args.batch_size,))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)

    def autocast():
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.amp == "bf16")

    def train_step():
        optimizer.zero_grad(set_to_none=True)
        with autocast():
            loss = F.cross_entropy(model(x), labels, label_smoothing=0.1)
        loss.backward()
        optimizer.step()
    model.train()
    train = median_seconds(train_step, args.repeats)
    model.eval()
    with torch.no_grad(), autocast():
        evaluate = median_seconds(lambda: model(x), args.repeats)
    print(f"{args.arch} batch {args.batch_size} threads {torch.get_num_threads()} torch {torch.__version__} "
          f"amp {args.amp}: "
          f"train {args.batch_size / train:.2f} img/s, eval {args.batch_size / evaluate:.2f} img/s")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    commands = parser.add_subparsers(dest="command", required=True)
    ops = commands.add_parser("ops")
    ops.add_argument("-b", "--batch-size", type=int, default=32)
    model = commands.add_parser("model")
    model.add_argument("arch")
    model.add_argument("-b", "--batch-size", type=int, default=32)
    model.add_argument("--resolution", type=int, default=224)
    model.add_argument("--classes", type=int, default=1000)
    model.add_argument("--amp", choices=["off", "bf16"], default="off")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    bench_ops(args) if args.command == "ops" else bench_model(args)


if __name__ == "__main__":
    main()
