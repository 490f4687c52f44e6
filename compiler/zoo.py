"""Example architectures for the 8x8 digits (the demo, the tests and the benches use them; the library does not):

- ``DigitsMLP``: flatten, one hidden ReLU layer, a linear head (the CLI fuzzer's fast model).
- ``DigitsCNN``: two conv + BN + ReLU blocks, average pooling, a linear head.
- ``EventsCNN``: the same for ``digits-events`` frames (2 x 10 x 10: ON/OFF events per step, averaged over time).
- ``DigitsBNCNN``: a 4-layer BN CNN (pooling before a hidden linear layer): 51,776 MACs in its
  conv/linear layers + 384 in its average pooling.
- ``DeepCNN``: five conv + BN + ReLU layers, global average pooling, a linear head (the binarization bench's deep CNN).
- ``DigitsResNet``: the CIFAR ResNet layout (He et al. 2016), 6n+2 weighted layers. ResNet-110 is n = 18: a 3x3
  stem conv, three stages of n basic blocks (two 3x3 conv + BN each; channels c, 2c, 4c on 8x8, 4x4, 2x2 maps),
  global average pooling and a linear head. The first block of stages 2 and 3 downsamples (stride 2) with a 1x1
  conv + BN shortcut; all other blocks have identity shortcuts. Narrow channels (c = 4 by default) keep training
  on 2 CPU cores to a few minutes.
Train them with ``snnc.train.fit.fit``."""
from __future__ import annotations

import torch
import torch.nn as nn


class DigitsMLP(nn.Module):
    def __init__(self, hidden: int = 32, classes: int = 10) -> None:
        super().__init__()
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(64, hidden)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.relu(self.fc1(self.flatten(x))))


class DigitsCNN(nn.Module):
    def __init__(self, c1: int = 16, c2: int = 32, act: type[nn.Module] = nn.ReLU) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, c1, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c1)
        self.relu1 = act()
        self.conv2 = nn.Conv2d(c1, c2, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c2)
        self.relu2 = act()
        self.pool = nn.AvgPool2d(2)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(c2 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.bn1(self.conv1(x)))
        x = self.relu2(self.bn2(self.conv2(x)))
        return self.fc(self.flatten(self.pool(x)))


class EventsCNN(nn.Module):
    """2 x 10 x 10 event-rate frames: conv 3x3 (pad 1) + BN + ReLU, avg-pool 2, conv 3x3 + BN + ReLU, linear."""

    def __init__(self, c1: int = 16, c2: int = 32, classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(2, c1, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c1)
        self.relu1 = nn.ReLU()
        self.pool = nn.AvgPool2d(2)
        self.conv2 = nn.Conv2d(c1, c2, 3, bias=False)
        self.bn2 = nn.BatchNorm2d(c2)
        self.relu2 = nn.ReLU()
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(c2 * 3 * 3, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.relu1(self.bn1(self.conv1(x))))
        x = self.relu2(self.bn2(self.conv2(x)))
        return self.fc(self.flatten(x))


class DigitsBNCNN(nn.Module):
    """conv 1->12 (3x3, pad 1; 8x8) + BN + ReLU, conv 12->24 (3x3, stride 2, pad 1; 4x4) + BN + ReLU, AvgPool2d(2)
    (24x2x2 = 96), Linear 96->32 + BN + ReLU, Linear 32->10. MACs per inference: 6,912 + 41,472 + 384 (pool) +
    3,072 + 320 = 52,160."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 12, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(12)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(12, 24, 3, stride=2, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(24)
        self.relu2 = nn.ReLU()
        self.pool = nn.AvgPool2d(2)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(96, 32, bias=False)
        self.bn3 = nn.BatchNorm1d(32)
        self.relu3 = nn.ReLU()
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.bn1(self.conv1(x)))
        x = self.relu2(self.bn2(self.conv2(x)))
        x = self.relu3(self.bn3(self.fc1(self.flatten(self.pool(x)))))
        return self.fc2(x)


class DeepCNN(nn.Module):
    """Six weighted layers: five 3x3 conv + BN + ReLU (16, 32, 32/stride 2, 64, 64 channels), global average
    pooling, a linear head."""

    def __init__(self) -> None:
        super().__init__()
        chans = [(1, 16, 1), (16, 32, 1), (32, 32, 2), (32, 64, 1), (64, 64, 1)]
        layers: list[nn.Module] = []
        for ci, co, s in chans:
            layers += [nn.Conv2d(ci, co, 3, stride=s, padding=1, bias=False), nn.BatchNorm2d(co), nn.ReLU()]
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.flatten(self.pool(self.features(x))))


def randomize_batchnorm(m: nn.Module, seed: int) -> nn.Module:
    """``m`` with every BatchNorm2d's statistics and affine drawn at random (mean ~ N(0, 0.1), var and weight in
    [0.5, 1.5), bias ~ N(0, 0.1)), as after training; returned in eval mode. For untrained benchmark nets."""
    g = torch.Generator().manual_seed(seed)
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            n = mod.num_features
            mod.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
            mod.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            mod.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            mod.bias.data.copy_(torch.randn(n, generator=g) * 0.1)
    return m.eval()


class BasicBlock(nn.Module):
    """relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)); shortcut = identity or 1x1 conv + BN (stride 2)."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu2 = nn.ReLU()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.shortcut(x))


class DigitsResNet(nn.Module):
    """CIFAR-style ResNet-(6n+2) for (N, 1, 8, 8) inputs; ``n=18`` is ResNet-110 (110 weighted layers)."""

    def __init__(self, n: int = 18, width: int = 4, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, width, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(width)
        self.relu = nn.ReLU()
        blocks: list[nn.Module] = []
        c = width
        for stage, cw in enumerate((width, 2 * width, 4 * width)):
            for i in range(n):
                stride = 2 if stage > 0 and i == 0 else 1
                blocks.append(BasicBlock(c, cw, stride))
                c = cw
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(c, classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        for b in self.blocks:  # zero-init the last BN of each block: the deep net starts near identity
            nn.init.zeros_(b.bn2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn(self.stem(x)))
        x = self.blocks(x)
        return self.fc(self.flatten(self.pool(x)))

    @property
    def depth(self) -> int:
        """Weighted layers (conv + linear) on the main path: 6n + 2."""
        return 6 * len(self.blocks) // 3 + 2
