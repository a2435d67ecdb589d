"""The original MaxQ code's sparse training, written out in plain PyTorch for the fixtures:
N:M and MaxQ masks (equal keys ordered as a stable sort orders them; docs/fidelity.md), the straight-through
conv-bn units with SR-STE decay, and the two models the step-parity test trains (the CIFAR
ResNet-18 and MobileNet V1 of the original code, with a width divisor so fixtures stay small).
Initialisation is PyTorch's default, as in the original's definitions of these two models.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


def hard_nm_mask(weight, n, m):
    """1 for the n largest |w| of every group of m consecutive input channels, else 0."""
    o, i, kh, kw = weight.shape
    groups = weight.abs().permute(0, 2, 3, 1).reshape(-1, m)
    order = torch.sort(groups, dim=1, stable=True).indices
    mask = torch.ones_like(groups).scatter_(1, order[:, :m - n], 0.0)
    return mask.reshape(o, kh, kw, i).permute(0, 3, 1, 2).contiguous(), groups


def soft_axis(magnitudes, k, tau):
    """Per row: 0 for the k smallest, sigmoid((|w| - theta) / tau) for the rest, theta halfway
    between the k-th and (k+1)-th smallest."""
    ordered, order = torch.sort(magnitudes, dim=1, stable=True)
    theta = (ordered[:, k - 1:k] + ordered[:, k:k + 1]) / 2
    return torch.sigmoid((magnitudes - theta) / tau).scatter_(1, order[:, :k], 0.0)


def maxq_mask(weight, n, m, preserve_rate, tau=0.01):
    local, groups = hard_nm_mask(weight, n, m)
    o, i, kh, kw = weight.shape
    # Incremental sparsity: the floor(p * G) groups with the smallest L1 norm stay dense.
    dense = int(preserve_rate * groups.shape[0])
    if dense > 0:
        smallest = torch.sort(groups.sum(dim=1), stable=True).indices[:dense]
        flat = local.permute(0, 2, 3, 1).reshape(-1, m).clone()
        flat[smallest] = 1.0
        local = flat.reshape(o, kh, kw, i).permute(0, 3, 1, 2)
    magnitudes = weight.abs()
    per_filter = magnitudes.reshape(o, -1)
    filter_axis = soft_axis(per_filter, int((m - n) / m * per_filter.shape[1]), tau).reshape(weight.shape)
    position_axis = 0.0
    if kh * kw > 1:
        per_position = magnitudes.reshape(o * i, kh * kw).t()
        position_axis = soft_axis(per_position, int((m - n) / m * per_position.shape[1]), tau).t().reshape(weight.shape)
    return local * (1 + filter_axis + position_axis)


class StraightThrough(torch.autograd.Function):
    """W * mask forward; the gradient passes to W unchanged (the soft units)."""

    @staticmethod
    def forward(ctx, weight, mask):
        return weight * mask

    @staticmethod
    def backward(ctx, grad):
        return grad, None


class ConvBN(nn.Module):
    """A conv-bn unit: `conv` (no bias) with the mask recomputed every training forward, `scale`."""

    def __init__(self, kind, inp, out, kernel, stride, n, m):
        super().__init__()
        self.kind, self.n, self.m, self.preserve_rate = kind, n, m, 0.0
        self.conv = nn.Conv2d(inp, out, kernel, stride, kernel // 2, bias=False)
        self.scale = nn.BatchNorm2d(out)
        self.register_buffer("mask", torch.ones_like(self.conv.weight))

    def compute_mask(self):
        w = self.conv.weight.detach()
        if self.kind == "SoftSRSTEConv2dBN":
            return hard_nm_mask(w, self.n, self.m)[0]
        return maxq_mask(w, self.n, self.m, self.preserve_rate)

    def forward(self, x):
        if self.training:
            self.mask.data = self.compute_mask()
        return self.scale(F.conv2d(x, StraightThrough.apply(self.conv.weight, self.mask), None, self.conv.stride,
                                   self.conv.padding))

    @torch.no_grad()
    def srste_decay(self, decay):
        self.conv.weight.grad.add_(decay * (1 - self.mask.clamp(0, 1)) * self.conv.weight)


class BasicBlock(nn.Module):
    def __init__(self, unit, inp, planes, stride):
        super().__init__()
        self.convbn1 = unit(inp, planes, 3, stride)
        self.convbn2 = unit(planes, planes, 3, 1)
        self.shortcut = nn.Sequential()
        if stride != 1 or inp != planes:
            self.shortcut = nn.Sequential(unit(inp, planes, 1, stride))

    def forward(self, x):
        return F.relu(self.convbn2(F.relu(self.convbn1(x))) + self.shortcut(x))


class CifarResNet18(nn.Module):
    """The original's c_resnet18 with every width divided by `divisor` (1 there: 64 .. 512)."""

    def __init__(self, unit, classes, divisor):
        super().__init__()
        base = 64 // divisor
        self.conv1 = nn.Conv2d(3, base, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(base)
        inp, stages = base, []
        for s, planes in enumerate([base, 2 * base, 4 * base, 8 * base]):
            blocks = []
            for j in range(2):
                blocks.append(BasicBlock(unit, inp, planes, 2 if j == 0 and s > 0 else 1))
                inp = planes
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.fc = nn.Conv2d(inp, classes, 1)

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        h = self.layer4(self.layer3(self.layer2(self.layer1(h))))
        return self.fc(F.adaptive_avg_pool2d(h, 1)).flatten(1)


class DepthwiseSeparable(nn.Sequential):
    def __init__(self, unit, inp, out, stride):
        super().__init__(nn.Conv2d(inp, inp, 3, stride, 1, groups=inp, bias=False), nn.BatchNorm2d(inp), nn.ReLU(),
                         unit(inp, out, 1, 1), nn.ReLU())


class MobileNetV1(nn.Module):
    """The original's mobilenet_v1 with every width divided by `divisor` (1 there)."""

    def __init__(self, unit, classes, divisor):
        super().__init__()
        table = [64, (128, 2), 128, (256, 2), 256, (512, 2), 512, 512, 512, 512, 512, (1024, 2), 1024]
        inp = 32 // divisor
        self.conv1 = nn.Sequential(nn.Conv2d(3, inp, 3, 2, 1, bias=False), nn.BatchNorm2d(inp), nn.ReLU())
        layers = []
        for entry in table:
            out, stride = (entry, 1) if isinstance(entry, int) else entry
            layers.append(DepthwiseSeparable(unit, inp, out // divisor, stride))
            inp = out // divisor
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(inp, classes)

    def forward(self, x):
        return self.fc(F.adaptive_avg_pool2d(self.features(self.conv1(x)), 1).flatten(1))


def units(model):
    return [mod for mod in model.modules() if isinstance(mod, ConvBN)]


def sgd(model, lr, momentum, weight_decay, nesterov, no_bn_decay):
    """The original's parameter groups: 1-D parameters without weight decay when no_bn_decay."""
    one_d = [p for p in model.parameters() if p.dim() == 1]
    rest = [p for p in model.parameters() if p.dim() != 1]
    return torch.optim.SGD([{"params": one_d, "weight_decay": 0 if no_bn_decay else weight_decay},
                            {"params": rest, "weight_decay": weight_decay}],
                           lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov)


def train_step(model, optimizer, images, labels, label_smoothing, decay):
    """The original's step: forward (fresh masks), loss, backward, SR-STE decay, SGD."""
    model.train()
    loss = F.cross_entropy(model(images), labels, label_smoothing=label_smoothing)
    optimizer.zero_grad()
    loss.backward()
    for unit in units(model):
        unit.srste_decay(decay)
    optimizer.step()
    return loss.item()
