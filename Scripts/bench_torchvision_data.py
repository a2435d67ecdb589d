"""The torchvision side of `maxq bench data`: images per second of an ImageFolder pipeline with
Pillow decoding, over several epochs (median), as docs/performance.md describes.

    python3 Scripts/bench_torchvision_data.py DIR --transform train|val --workers 0|2 [--resolution 32]

--workers 0 runs in the main process (one process).
"""
import argparse, statistics, time
import torch
import torchvision.datasets as datasets
import torchvision.transforms as T


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("directory")
    parser.add_argument("--transform", choices=["train", "val"], default="train")
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--resolution", type=int, default=224)
    args = parser.parse_args()
    torch.set_num_threads(1 if args.workers else 2)
    if args.resolution <= 64:  # CIFAR JPEGs: RandomCrop(pad 4), flip, normalise
        normalize = T.Normalize((0.491, 0.482, 0.447), (0.247, 0.243, 0.262))
        transform = (T.Compose([T.RandomCrop(args.resolution, padding=4), T.RandomHorizontalFlip(), T.ToTensor(), normalize])
                     if args.transform == "train" else T.Compose([T.ToTensor(), normalize]))
    else:
        normalize = T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
        transform = (T.Compose([T.RandomResizedCrop(args.resolution), T.RandomHorizontalFlip(), T.ToTensor(), normalize])
                     if args.transform == "train"
                     else T.Compose([T.Resize(args.resolution * 256 // 224), T.CenterCrop(args.resolution), T.ToTensor(), normalize]))
    dataset = datasets.ImageFolder(args.directory, transform)
    loader = torch.utils.data.DataLoader(dataset, batch_size=args.batch_size, shuffle=True, num_workers=args.workers,
                                         persistent_workers=args.workers > 0)
    rates = []
    for _ in range(args.epochs):
        start, images = time.perf_counter(), 0
        for batch, _labels in loader:
            images += batch.shape[0]
        rates.append(images / (time.perf_counter() - start))
    print(f"{args.directory} transform={args.transform} workers={args.workers} batch={args.batch_size} images={len(dataset)}: "
          f"{statistics.median(rates):.0f} img/s (median of {args.epochs} epochs)")


if __name__ == "__main__":
    main()
