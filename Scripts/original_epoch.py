"""Trains the original MaxQ code (a checkout of it, imported) for one epoch on an ImageFolder
CIFAR-10 of JPEGs, on the CPU, the way `maxq train DIR --set ImageFolder -a c_resnet18` trains:
its model and step (Scripts/trajectory.py), torchvision's loader with RandomCrop(32, padding=4),
flip and CIFAR normalisation, then its end-of-epoch mask update and validation. It prints the
original's log lines (every 100 steps) and the top-1, so that both sides of docs/fidelity.md are
measured on the same machine, with the same seed and data. `--device cuda` runs the same fp32 step
on a GPU (TF32 off, no autocast) to measure many seeds of the original quickly.

    python3 Scripts/original_epoch.py --original /path/to/MaxQ --data /tmp/cifar \
        --conv-bn-type SoftMaxQConv2DBN --seed 42
"""
import argparse, os, sys, time
import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(__file__))
import trajectory as T


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--original", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--arch", default="c_resnet18")
    p.add_argument("--conv-bn-type", dest="conv_bn_type", default="SoftMaxQConv2DBN")
    p.add_argument("--N", type=int, default=2)
    p.add_argument("--M", type=int, default=4)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--batch-size", dest="batch_size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--wd", type=float, default=1e-4)
    p.add_argument("--decay", type=float, default=2e-4)
    p.add_argument("--label-smoothing", dest="label_smoothing", type=float, default=0.0)
    p.add_argument("--no-bn-decay", dest="no_bn_decay", default="True")
    p.add_argument("--nesterov", default="False")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu", help="cpu, or cuda (fp32: TF32 off, no autocast)")
    p.add_argument("--workers", type=int, default=1, help="data-loading processes")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    device = torch.device(args.device)
    sys.path.insert(0, args.original)
    import torchvision
    from torchvision import transforms
    from utils.net_utils import show_zero_num_and_update_mask

    normalize = transforms.Normalize(mean=[0.491, 0.482, 0.447], std=[0.247, 0.243, 0.262])
    train = torchvision.datasets.ImageFolder(
        os.path.join(args.data, "train"),
        transforms.Compose([transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(),
                            transforms.ToTensor(), normalize]))
    val_dir = os.path.join(args.data, "val" if os.path.isdir(os.path.join(args.data, "val")) else "test")
    val = torchvision.datasets.ImageFolder(val_dir, transforms.Compose([transforms.ToTensor(), normalize]))
    model = T.original_model(args, len(train.classes)).to(device)
    optimizer = T.original_optimizer(model, args)
    model.train()
    for epoch in range(1):  # epoch 0 of a 1-epoch run: lr constant, N:M from the start
        loader = torch.utils.data.DataLoader(train, batch_size=args.batch_size, shuffle=True,
                                             num_workers=args.workers,
                                             generator=torch.Generator().manual_seed(args.seed + epoch))
        started, total, seen = time.time(), 0.0, 0
        for step, (images, labels) in enumerate(loader):
            loss = T.original_step(model, optimizer, images.to(device), labels.to(device), args)
            total, seen = total + loss * len(labels), seen + len(labels)
            if step % 100 == 0:
                print(f"Epoch: [{epoch}][{step}/{len(loader)}]\tLoss {loss:.4f} ({total / seen:.4f})\t"
                      f"{(time.time() - started) / (step + 1):.2f} s/step", flush=True)
        model.apply(show_zero_num_and_update_mask)
        model.eval()
        correct = count = 0
        with torch.no_grad():
            for images, labels in torch.utils.data.DataLoader(val, batch_size=500, num_workers=args.workers):
                correct += (model(images.to(device)).argmax(1).cpu() == labels).sum().item()
                count += len(labels)
        model.train()
        print(f"=> Epoch: {epoch}, train loss {total / seen:.4f}, Acc: {100 * correct / count:.2f}%", flush=True)


if __name__ == "__main__":
    main()
