#!/usr/bin/env python3
"""Writes Tests/Fixtures/flops.json: FLOPs and parameters by the convention of the original's
compute_flops.py (docs/flops.md), counted here independently with PyTorch forward hooks on
torchvision's resnet34/resnet50 and on MobileNet V1 as the reference builds it, at 1:4, 2:4, 1:16
and 2:8, input 224, batch 1, 1000 classes. Needs torch and torchvision."""
import json
import os

import torch
import torch.nn as nn
import torchvision

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def mobilenet_v1():
    def unit(i, o, stride, groups=1, kernel=3):
        return [nn.Conv2d(i, o, kernel, stride, kernel // 2, groups=groups, bias=False), nn.BatchNorm2d(o),
                nn.ReLU(inplace=True)]
    layers = unit(3, 32, 2)
    table = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + [(1024, 2), (1024, 1)]
    width = 32
    for out, stride in table:
        layers += unit(width, width, stride, groups=width) + unit(width, out, 1, kernel=1)
        width = out
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1024, 1000))


def counts(model, arch, kept):
    flops = []

    def conv_hook(conv, inputs, output):
        per_output = conv.kernel_size[0] * conv.kernel_size[1] * conv.in_channels // conv.groups + 1
        total = per_output * output[0].numel()
        depthwise = conv.groups == conv.in_channels and conv.groups > 1
        stem = conv.kernel_size[0] == 7 or conv.in_channels == 3
        downsample = conv.stride[0] == 2 and conv.kernel_size[0] == 1
        dense = depthwise or stem or (downsample and arch != "resnet50")
        flops.append(total if dense else total * kept)

    def linear_hook(linear, inputs, output):
        flops.append(linear.weight.numel() + linear.bias.numel())

    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            module.register_forward_hook(conv_hook)
        elif isinstance(module, nn.Linear):
            module.register_forward_hook(linear_hook)
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 3, 224, 224))
    params = 0.0
    for name, p in model.named_parameters():
        sparse = p.dim() == 4 and p.shape[-1] != 7 and p.shape[1] not in (1, 3)
        if sparse and "downsample" in name and arch != "resnet50":
            sparse = False
        params += p.numel() * kept if sparse else p.numel()
    return sum(flops), params


fixtures = {}
for arch, build in [("resnet34", torchvision.models.resnet34), ("resnet50", torchvision.models.resnet50),
                    ("mobilenet_v1", mobilenet_v1)]:
    fixtures[arch] = {}
    for n, m in [(1, 4), (2, 4), (1, 16), (2, 8)]:
        flops, params = counts(build(), arch, n / m)
        fixtures[arch][f"{n}:{m}"] = [flops, params]
        print(f"{arch} {n}:{m}  + Number of FLOPs: {flops / 1e9:.4f}G  + Number of params: {params / 1e6:.2f}M")
with open(os.path.join(ROOT, "Tests/Fixtures/flops.json"), "w") as f:
    json.dump(fixtures, f, indent=1)
