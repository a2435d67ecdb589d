#!/usr/bin/env python3
"""Checks an ONNX file from `maxq export --format onnx` against `maxq predict --json`.

    Scripts/check_onnx.py MODEL.onnx CKPT -a ARCH [--num-classes K] [predict options] [--images FILE...]

Runs onnxruntime on batches of 1, 2, 4, 8 and 16 images (the images repeated as needed), each
image through the validation transform (Pillow: shorter side resized bilinear to 256/224 of the
resolution, centre crop, ToTensor, Normalize; CIFAR models: 32x32 and CIFAR statistics), and
compares the logits with those `maxq predict --json` prints for the same checkpoint (options such
as --conv-bn-type, --N, --M are passed to it): `all_close: True` when the largest difference is
within 1e-4 of the largest logit. Also runs onnx.checker (full check). Needs onnx, onnxruntime,
numpy and Pillow; not PyTorch. Exit status 1 when a batch differs.
"""
import argparse
import glob
import json
import os
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STATISTICS = {  # (mean, std) per channel: ImageNet, and CIFAR for resolutions up to 64
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "cifar": ((0.491, 0.482, 0.447), (0.247, 0.243, 0.262)),
}


def validation_input(path, resolution):
    small = resolution <= 64
    resize = resolution if small else resolution * 256 // 224
    image = Image.open(path).convert("RGB")
    w, h = image.size
    if w <= h:
        size = (resize, int(resize * h / w))
    else:
        size = (int(resize * w / h), resize)
    image = image.resize(size, Image.BILINEAR)
    w, h = image.size
    left, top = int(round((w - resolution) / 2.0)), int(round((h - resolution) / 2.0))
    image = image.crop((left, top, left + resolution, top + resolution))
    mean, std = STATISTICS["cifar" if small else "imagenet"]
    x = np.asarray(image, dtype=np.float32) / 255
    x = (x - np.array(mean, dtype=np.float32)) / np.array(std, dtype=np.float32)
    return x.transpose(2, 0, 1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model")
    parser.add_argument("checkpoint")
    parser.add_argument("-a", "--arch", required=True)
    parser.add_argument("--images", nargs="+")
    parser.add_argument("--maxq", default=os.path.join(ROOT, ".build/release/maxq"))
    args, predict_options = parser.parse_known_args()
    images = args.images or sorted(glob.glob(os.path.join(ROOT, "Tests/Fixtures/images/*.jpg"))
                                   + glob.glob(os.path.join(ROOT, "Tests/Fixtures/images/*.png")))

    model = onnx.load(args.model)
    onnx.checker.check_model(model, full_check=True)
    print(f"onnx.checker: passed (opset {model.opset_import[0].version}, IR {model.ir_version})")
    print("metadata:", {p.key: p.value for p in model.metadata_props})

    run = subprocess.run([args.maxq, "predict", "-a", args.arch, "--pretrained", args.checkpoint, "--json",
                          *predict_options, *images], capture_output=True, text=True)
    if run.returncode != 0:
        sys.exit(f"maxq predict failed: {run.stderr.strip()}")
    ours = {row["image"]: np.array(row["logits"], dtype=np.float64)
            for row in map(json.loads, run.stdout.splitlines())}

    input_shape = model.graph.input[0].type.tensor_type.shape.dim
    resolution = input_shape[2].dim_value
    inputs = [validation_input(path, resolution) for path in images]
    session = onnxruntime.InferenceSession(args.model, providers=["CPUExecutionProvider"])
    failed = False
    for batch in (1, 2, 4, 8, 16):
        chosen = [i % len(images) for i in range(batch)]
        logits = session.run(None, {"input": np.stack([inputs[i] for i in chosen])})[0]
        expected = np.stack([ours[images[i]] for i in chosen])
        difference = np.abs(logits - expected).max() / max(np.abs(expected).max(), 1e-12)
        close = bool(difference <= 1e-4)
        failed |= not close
        print(f"batch {batch:2d}: all_close: {close} (largest difference {difference:.2e} of the largest logit)")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
