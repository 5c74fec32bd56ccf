"""Reference CIFAR architectures from the literature, to compare the source projects against.

Parameter counts are for ``num_classes=10`` and the default hparams; MACs are per 32x32 image.
"""

from __future__ import annotations

import torch
from torch import nn

from .registry import (
    check_num_classes,
    check_positive,
    check_width,
    register_model,
    scaled,
)

__all__ = ["AirbenchNet", "CifarResNet"]


class _BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with an identity or 1x1 conv-BN (option B) shortcut."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.act = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.act(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """The CIFAR ResNet of He et al. 2016 ("Deep Residual Learning", Sec. 4.2), depth 6n+2.

    Conv3x3(3->16) -> BN -> ReLU, then three stages of ``n`` basic blocks with 16, 32, 64
    channels (the first block of stages 2 and 3 has stride 2), global average pool,
    Linear(64, num_classes). Shortcuts that change shape use option B (1x1 conv + BN); the
    paper's CIFAR runs used option A (zero-padding identity), which has 2,752 fewer parameters
    at n=3. Convs get He (Kaiming normal) init as in the paper.

    Shapes: (B, 3, 32, 32) -> (B, 16, 32, 32) -> (B, 32, 16, 16) -> (B, 64, 8, 8) -> (B, 64)
    -> (B, num_classes).

    Parameters (n=3, ResNet-20): 272,474 (width 1.0, 10 classes); MACs: 40.8M per image.

    Args:
        num_classes: number of logits.
        n: basic blocks per stage (3 -> ResNet-20, 5 -> ResNet-32, ...).
        width: multiplier of the stage widths (16, 32, 64).
    """

    def __init__(self, num_classes: int = 10, n: int = 3, width: float = 1.0) -> None:
        super().__init__()
        num_classes = check_num_classes(num_classes)
        width = check_width(width)
        widths = [scaled(c, width) for c in (16, 32, 64)]
        self.stem = nn.Sequential(
            nn.Conv2d(3, widths[0], 3, padding=1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        )
        blocks: list[nn.Module] = []
        cin = widths[0]
        for stage, cout in enumerate(widths):
            for i in range(n):
                blocks.append(_BasicBlock(cin, cout, stride=2 if stage > 0 and i == 0 else 1))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes)
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map images (B, 3, 32, 32) to logits (B, num_classes)."""
        return self.head(self.blocks(self.stem(x)))


class _AirbenchBlock(nn.Sequential):
    """Conv -> MaxPool2 -> BN -> GELU -> Conv -> BN -> GELU (airbench's ``ConvGroup``)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False),
            nn.MaxPool2d(2),
            nn.BatchNorm2d(cout),
            nn.GELU(),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.GELU(),
        )


class AirbenchNet(nn.Module):
    """The network of Keller Jordan's airbench (KellerJordan/cifar10-airbench), simplified.

    Stem Conv3x3(3->32) -> BN -> GELU, three blocks Conv -> MaxPool2 -> BN -> GELU -> Conv ->
    BN -> GELU with widths 64, 128, 256, then AdaptiveMaxPool2d(1) -> Flatten ->
    Linear(256, num_classes, bias=False), and logits multiplied by a fixed ``scale`` (airbench's
    ``scaling_factor`` 1/9).

    Differences from airbench94: its first layer is a frozen 2x2 whitening conv initialised
    from image-patch statistics (here a learned 3x3 conv + BN), its block widths are 64/256/256
    (here 64/128/256), and its BatchNorms use momentum 0.4 (PyTorch convention) with frozen
    weights (here PyTorch defaults, all trainable). Training tricks (label smoothing, lookahead,
    TTA) belong to the training loop, not the model.

    Shapes: (B, 3, 32, 32) -> (B, 32, 32, 32) -> (B, 64, 16, 16) -> (B, 128, 8, 8)
    -> (B, 256, 4, 4) -> (B, 256) -> (B, num_classes).

    Parameters: 1,166,496 (width 1.0, 10 classes); MACs: 85.8M per image.

    Args:
        num_classes: number of logits.
        width: multiplier of every width (32, 64, 128, 256), each rounded to a multiple of 8.
        scale: fixed factor applied to the logits.
    """

    def __init__(self, num_classes: int = 10, width: float = 1.0, scale: float = 1 / 9) -> None:
        super().__init__()
        num_classes = check_num_classes(num_classes)
        width = check_width(width)
        self.scale = check_positive(scale, "scale")
        stem, w1, w2, w3 = (scaled(c, width, divisor=8) for c in (32, 64, 128, 256))
        self.stem = nn.Sequential(
            nn.Conv2d(3, stem, 3, padding=1, bias=False), nn.BatchNorm2d(stem), nn.GELU()
        )
        self.blocks = nn.Sequential(
            _AirbenchBlock(stem, w1), _AirbenchBlock(w1, w2), _AirbenchBlock(w2, w3)
        )
        self.head = nn.Sequential(
            nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(w3, num_classes, bias=False)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map images (B, 3, 32, 32) to logits (B, num_classes), multiplied by ``scale``."""
        return self.head(self.blocks(self.stem(x))) * self.scale

    def extra_repr(self) -> str:
        return f"scale={self.scale:.4g}"


@register_model(
    "resnet20",
    source="He et al. 2016, Deep Residual Learning for Image Recognition (CIFAR ResNet-20)",
    description="CIFAR ResNet-20: 3 stages x 3 basic blocks, 16-32-64, option-B shortcuts",
)
def resnet20(num_classes: int = 10, width: float = 1.0) -> nn.Module:
    """Build :class:`CifarResNet` with n=3 (272,474 parameters at the defaults)."""
    return CifarResNet(num_classes, n=3, width=width)


@register_model(
    "airbench",
    source="airbench (KellerJordan/cifar10-airbench)",
    description="airbench-style VGG: stem + 3 conv groups 64-128-256, GELU, max-pool head",
)
def airbench(num_classes: int = 10, width: float = 1.0, scale: float = 1 / 9) -> nn.Module:
    """Build :class:`AirbenchNet` (1,166,496 parameters at the defaults)."""
    return AirbenchNet(num_classes, width=width, scale=scale)


@register_model(
    "airbench_small",
    source="airbench (KellerJordan/cifar10-airbench)",
    description="airbench at half width (16-32-64-128), for quick sweeps",
)
def airbench_small(num_classes: int = 10, width: float = 0.5, scale: float = 1 / 9) -> nn.Module:
    """Build :class:`AirbenchNet` at width 0.5 (292,944 parameters at the defaults)."""
    return AirbenchNet(num_classes, width=width, scale=scale)
