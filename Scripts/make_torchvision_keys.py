#!/usr/bin/env python3
"""Writes Tests/Fixtures/torchvision/ARCH.json: the names and shapes of torchvision's state dict
for each architecture it shares with maxq (num_classes 10), in order; the tests check that
`maxq export --format torchvision` writes exactly these. Needs torch and torchvision."""
import json
import os

import torchvision

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
folder = os.path.join(ROOT, "Tests/Fixtures/torchvision")
os.makedirs(folder, exist_ok=True)
for arch in ["resnet18", "resnet34", "resnet50", "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large"]:
    state = getattr(torchvision.models, arch)(num_classes=10).state_dict()
    with open(os.path.join(folder, f"{arch}.json"), "w") as f:
        json.dump([[name, list(t.shape)] for name, t in state.items()], f)
    print(arch, len(state))
