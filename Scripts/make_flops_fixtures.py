#!/usr/bin/env python3
"""Writes Tests/Fixtures/flops.json from the original project's own compute_flops.py: the FLOPs and
parameter counts it gives torchvision's resnet34/resnet50 and its MobileNet V1 at 1:4, 2:4, 1:16
and 2:8 (input 224, batch 1, 1000 classes), as plain counts rather than the G/M it prints.

Usage: Scripts/make_flops_fixtures.py PATH/TO/MaxQ   (a checkout of github.com/JingyangXiang/MaxQ;
its compute_flops.py and models/mobilenet_v1_dense.py are imported from there, not copied).
Needs torch, torchvision and numpy."""
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

if len(sys.argv) != 2 or not os.path.isfile(os.path.join(sys.argv[1], "compute_flops.py")):
    sys.exit("usage: make_flops_fixtures.py PATH/TO/MaxQ (the folder holding compute_flops.py)")
sys.path.insert(0, os.path.abspath(sys.argv[1]))

import torchvision  # noqa: E402
import compute_flops  # noqa: E402
from models.mobilenet_v1_dense import mobilenet_v1  # noqa: E402

fixtures = {}
for arch, build in [("resnet34", torchvision.models.resnet34), ("resnet50", torchvision.models.resnet50),
                    ("mobilenet_v1", mobilenet_v1)]:
    fixtures[arch] = {}
    for n, m in [(1, 4), (2, 4), (1, 16), (2, 8)]:
        prune_rate = 1 - n / m  # as the script's own main computes it
        flops = compute_flops.print_model_param_flops(build(), prune_rate=prune_rate) * 1e9
        params = compute_flops.print_model_param_nums(build(), prune_rate=prune_rate) * 1e6
        fixtures[arch][f"{n}:{m}"] = [round(flops, 3), round(params, 3)]
        print(f"{arch} {n}:{m}  + Number of FLOPs: {flops / 1e9:.2f}G  + Number of params: {params / 1e6:.2f}M")
with open(os.path.join(ROOT, "Tests/Fixtures/flops.json"), "w") as f:
    json.dump(fixtures, f, indent=1)
