"""The architectures of the five source projects, reproduced by name.

Each builder follows its source project's README (``/work/shared/seeds/seed00N_*.md``); where
the README leaves a choice open, the docstring says which reading was taken and why. Parameter
counts are for ``num_classes=10`` and the default hparams unless stated; MACs are per 32x32
image (``count_macs``).
"""

from __future__ import annotations

import torch
from torch import nn

from cifar_hpo.errors import ConfigError

from .registry import check_dropout, check_num_classes, check_width, register_model, scaled

__all__ = ["CifarNet", "Compact200k", "Seed000CNN", "Seed001CNN"]


class Seed000CNN(nn.Module):
    """Source project 000's ``Net``: three Conv-ReLU-MaxPool blocks and a two-layer MLP head.

    Source: seed000 (cifar10-simple-cnn) README, "Architecture": 3 blocks
    Conv2d -> ReLU -> MaxPool2d with filters 3 -> 32 -> 64 -> 128 and spatial size
    32 -> 16 -> 8 -> 4, then "fully connected layers with ReLU activation, dropout layers".

    Reading chosen for the unspecified head: Flatten -> Linear(128*4*4 = 2048, 256) -> ReLU ->
    Dropout(p) -> Linear(256, num_classes), the smallest head that matches the plural "layers"
    (one hidden layer). Convs are 3x3 with padding 1 and bias, no BatchNorm (the README lists
    none).

    Shapes: (B, 3, 32, 32) -> (B, 32, 16, 16) -> (B, 64, 8, 8) -> (B, 128, 4, 4) -> (B, 2048)
    -> (B, 256) -> (B, num_classes).

    Parameters: 620,362 (width 1.0, 10 classes); MACs: 10.8M per image.

    Args:
        num_classes: number of logits.
        dropout: dropout probability before the last linear layer.
        width: multiplier of the conv channels (32, 64, 128) and the hidden width (256).
    """

    def __init__(self, num_classes: int = 10, dropout: float = 0.5, width: float = 1.0) -> None:
        super().__init__()
        num_classes = check_num_classes(num_classes)
        dropout, width = check_dropout(dropout), check_width(width)
        c1, c2, c3 = (scaled(c, width) for c in (32, 64, 128))
        hidden = scaled(256, width)

        def block(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2)
            )

        self.features = nn.Sequential(block(3, c1), block(c1, c2), block(c2, c3))
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c3 * 4 * 4, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map images (B, 3, 32, 32) to logits (B, num_classes)."""
        return self.classifier(self.features(x))


class Seed001CNN(nn.Module):
    """Source project 001's course-project CNN (the README does not spell the layers out).

    Source: seed001 (cifar10-cnn-early-stopping) README: "a CNN ... processes the image as a
    3x32x32 tensor and applies convolutional filters", Adam at lr 1e-3, batch 32, and
    overfitting after 2-3 epochs (validation loss ~0.83). No layer list, no BatchNorm, no
    dropout are mentioned.

    Reading chosen: the plain two-block CNN typical of such course projects,
    Conv(3->32) -> ReLU -> MaxPool2, Conv(32->64) -> ReLU -> MaxPool2, Flatten ->
    Linear(64*8*8 = 4096, 128) -> ReLU -> Dropout(p) -> Linear(128, num_classes). It is
    deliberately different from ``seed000_cnn`` (two blocks, a wider flatten, ~0.55M params)
    and it overfits early as the README reports. ``dropout`` defaults to 0 because the README
    mentions no dropout; the sweep can turn it on.

    Shapes: (B, 3, 32, 32) -> (B, 32, 16, 16) -> (B, 64, 8, 8) -> (B, 4096) -> (B, 128)
    -> (B, num_classes).

    Parameters: 545,098 (width 1.0, 10 classes); MACs: 6.1M per image.

    Args:
        num_classes: number of logits.
        dropout: dropout probability before the last linear layer.
        width: multiplier of the conv channels (32, 64) and the hidden width (128).
    """

    def __init__(self, num_classes: int = 10, dropout: float = 0.0, width: float = 1.0) -> None:
        super().__init__()
        num_classes = check_num_classes(num_classes)
        dropout, width = check_dropout(dropout), check_width(width)
        c1, c2, hidden = (scaled(c, width) for c in (32, 64, 128))
        self.features = nn.Sequential(
            nn.Conv2d(3, c1, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c2 * 8 * 8, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map images (B, 3, 32, 32) to logits (B, num_classes)."""
        return self.classifier(self.features(x))


class _SeparableConv(nn.Sequential):
    """Depthwise kxk conv then pointwise 1x1 conv, both without bias (a BN follows)."""

    def __init__(
        self, cin: int, cout: int, *, stride: int = 1, padding: int = 1, dilation: int = 1
    ) -> None:
        super().__init__(
            nn.Conv2d(
                cin,
                cin,
                3,
                stride=stride,
                padding=padding,
                dilation=dilation,
                groups=cin,
                bias=False,
            ),
            nn.Conv2d(cin, cout, 1, bias=False),
        )


class _ResidualSeparable(nn.Module):
    """ReLU(BN(separable(x)) + BN(conv1x1(x))), then spatial dropout (cifarnet C2/C3)."""

    def __init__(self, cin: int, cout: int, dropout: float, *, dilation: int = 1) -> None:
        super().__init__()
        self.conv = _SeparableConv(cin, cout, padding=dilation, dilation=dilation)
        self.bn = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.act = nn.ReLU(inplace=True)
        self.drop = nn.Dropout2d(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.act(self.bn(self.conv(x)) + self.shortcut(x)))


class CifarNet(nn.Module):
    """Source project 002's CIFARNet: depthwise-separable convs, two residual blocks,
    spatial dropout.

    Source: seed002 (cifar10-cifarnet-dsconv-residual) README, "Layer Breakdown" table, and its
    stated size of 174,762 parameters (the same README also says "~1.2M" once; the exact figure
    is the one repeated with the model size, 0.67 MB = 174,762 x 4 bytes).

    Layers (every conv 3x3 unless noted, convs without bias because a BatchNorm follows):

    - C1: Conv(3->40, pad 1) -> BN -> ReLU -> Dropout2d. (B, 40, 32, 32)
    - C2: depthwise 3x3 + pointwise 40->128 -> BN, plus shortcut Conv1x1(40->128) -> BN,
      sum -> ReLU -> Dropout2d. (B, 128, 32, 32)
    - C3: as C2 with the depthwise conv dilated (dilation 4, padding 4), 128->240.
      (B, 240, 32, 32)
    - C4: depthwise 3x3 stride 2 + pointwise 240->384 -> BN -> ReLU -> Dropout2d, no residual.
      (B, 384, 16, 16)
    - Head: global average pool -> Linear(384, num_classes). (B, num_classes)

    Parameters: 174,762 (width 1.0, 10 classes), exactly the README's count; MACs: 100.2M.
    Of the variants tried (conv bias on/off, BN after the depthwise conv too, shortcut with or
    without BN) only this one gives 174,762: bias-free convs, one BN after each pointwise conv,
    and projection shortcuts with BN. A public revision of the source project's code uses
    larger kernels (C1 11x11, C2/C3 depthwise 7x7, C4 depthwise 5x5; 198,762 parameters), omits
    C4's ReLU and applies the head as a 1x1 conv before the pooling (equivalent to GAP +
    Linear); we follow the README's table instead.

    ``dropout`` default 0.05: the README gives no value; spatial dropout zeroes whole channels,
    so a small p is customary (the revision mentioned above uses 0.05-0.12 per block).

    Args:
        num_classes: number of logits.
        dropout: Dropout2d probability after every block.
        width: multiplier of the channel counts (40, 128, 240, 384).
    """

    def __init__(self, num_classes: int = 10, dropout: float = 0.05, width: float = 1.0) -> None:
        super().__init__()
        num_classes = check_num_classes(num_classes)
        dropout, width = check_dropout(dropout), check_width(width)
        c1, c2, c3, c4 = (scaled(c, width) for c in (40, 128, 240, 384))
        self.c1 = nn.Sequential(
            nn.Conv2d(3, c1, 3, padding=1, bias=False),
            nn.BatchNorm2d(c1),
            nn.ReLU(inplace=True),
            nn.Dropout2d(dropout),
        )
        self.c2 = _ResidualSeparable(c1, c2, dropout)
        self.c3 = _ResidualSeparable(c2, c3, dropout, dilation=4)
        self.c4 = nn.Sequential(
            _SeparableConv(c3, c4, stride=2),
            nn.BatchNorm2d(c4),
            nn.ReLU(inplace=True),
            nn.Dropout2d(dropout),
        )
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c4, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map images (B, 3, 32, 32) to logits (B, num_classes)."""
        return self.head(self.c4(self.c3(self.c2(self.c1(x)))))


def _conv_bn_relu(
    cin: int, cout: int, dropout: float | None, k: int = 3, *, stride: int = 1, dilation: int = 1
) -> list[nn.Module]:
    """Conv(k x k, 'same' padding unless strided) -> BN -> ReLU [-> Dropout]."""
    pad = dilation * (k - 1) // 2
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, k, stride=stride, padding=pad, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    ]
    if dropout is not None:
        layers.append(nn.Dropout(dropout))
    return layers


class Compact200k(nn.Module):
    """Source project 004's compact CNN (< 200k parameters): C1..C5 without max-pooling.

    Source: seed004 (cifar10-compact-200k) README, "Model Overview" (blocks C1..C5, GAP + FC,
    stride 2 instead of MaxPool, ``DROPOUT_VALUE`` 0.1). Convs are 3x3 without bias, each
    followed by BN -> ReLU; "Dropout" is element-wise ``nn.Dropout`` as in the README.

    - C1: Conv(3->32) -> Dropout, Conv(32->32) -> Dropout, Conv1x1(32->10) -> Dropout.
      (B, 10, 32, 32)
    - C2: two depthwise-separable convs (depthwise 3x3 + pointwise, then BN -> ReLU)
      10->32->64, no dropout. (B, 64, 32, 32)
    - C3: dilated Conv(64->64), Conv(64->64) -> Dropout, Conv1x1(64->10) -> Dropout.
      (B, 10, 32, 32)
    - C4: Conv(10->64) -> Dropout, Conv(64->64, stride 2) -> Dropout, Conv1x1(64->10) -> Dropout.
      (B, 10, 16, 16)
    - C5: dilated Conv(10->128) -> Dropout. (B, 128, 16, 16)
    - Head: global average pool -> Linear(128, num_classes). (B, num_classes)

    Parameters: 144,736 (width 1.0, 10 classes); MACs: 108.1M per image.

    Differences from the source project: the README says "dilated" for C3 and C5 but gives no
    rate; we use ``dilation=2`` with 'same' padding. A public copy of the source project's code
    has dilation 1 in both (dilated in name only) and no padding on C3's second conv
    (32 -> 30 px, then 15 px after the stride); pass ``dilation=1`` for the former. The README's
    "receptive field >= 49" does not follow from either: ours is 27 px at dilation 2. Parameter
    counts do not depend on the dilation.

    Args:
        num_classes: number of logits.
        dropout: dropout probability (the source project's ``DROPOUT_VALUE``).
        width: multiplier of every channel count (32, 10, 64, 128).
        dilation: dilation of the first conv in C3 and the conv in C5 (padding follows it).
    """

    def __init__(
        self, num_classes: int = 10, dropout: float = 0.1, width: float = 1.0, dilation: int = 2
    ) -> None:
        super().__init__()
        num_classes = check_num_classes(num_classes)
        p, width = check_dropout(dropout), check_width(width)
        if isinstance(dilation, bool) or not isinstance(dilation, int) or dilation < 1:
            raise ConfigError(f"dilation must be an integer >= 1, got {dilation!r}")
        c32, c10, c64, c128 = (scaled(c, width) for c in (32, 10, 64, 128))

        def separable(cin: int, cout: int) -> list[nn.Module]:
            return [
                nn.Conv2d(cin, cin, 3, padding=1, groups=cin, bias=False),
                nn.Conv2d(cin, cout, 1, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True),
            ]

        self.c1 = nn.Sequential(
            *_conv_bn_relu(3, c32, p), *_conv_bn_relu(c32, c32, p), *_conv_bn_relu(c32, c10, p, 1)
        )
        self.c2 = nn.Sequential(*separable(c10, c32), *separable(c32, c64))
        self.c3 = nn.Sequential(
            *_conv_bn_relu(c64, c64, None, dilation=dilation),
            *_conv_bn_relu(c64, c64, p),
            *_conv_bn_relu(c64, c10, p, 1),
        )
        self.c4 = nn.Sequential(
            *_conv_bn_relu(c10, c64, p),
            *_conv_bn_relu(c64, c64, p, stride=2),
            *_conv_bn_relu(c64, c10, p, 1),
        )
        self.c5 = nn.Sequential(*_conv_bn_relu(c10, c128, p, dilation=dilation))
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c128, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map images (B, 3, 32, 32) to logits (B, num_classes)."""
        return self.head(self.c5(self.c4(self.c3(self.c2(self.c1(x))))))


@register_model(
    "seed000_cnn",
    source="seed000",
    description="3 Conv-ReLU-MaxPool blocks (32-64-128) + MLP head 2048-256 (source project 000)",
)
def seed000_cnn(num_classes: int = 10, dropout: float = 0.5, width: float = 1.0) -> nn.Module:
    """Build :class:`Seed000CNN` (620,362 parameters at the defaults)."""
    return Seed000CNN(num_classes, dropout=dropout, width=width)


@register_model(
    "seed001_cnn",
    source="seed001",
    description="plain 2-block CNN (32-64) + MLP head 4096-128, a reading of source project 001",
)
def seed001_cnn(num_classes: int = 10, dropout: float = 0.0, width: float = 1.0) -> nn.Module:
    """Build :class:`Seed001CNN` (545,098 parameters at the defaults)."""
    return Seed001CNN(num_classes, dropout=dropout, width=width)


@register_model(
    "cifarnet",
    source="seed002",
    description="depthwise-separable CNN with residual C2/C3, dilated C3, spatial dropout",
)
def cifarnet(num_classes: int = 10, dropout: float = 0.05, width: float = 1.0) -> nn.Module:
    """Build :class:`CifarNet` (174,762 parameters at the defaults, as in source project 002)."""
    return CifarNet(num_classes, dropout=dropout, width=width)


@register_model(
    "resnet18",
    source="seed003",
    description="torchvision ResNet-18 with its ImageNet stem (7x7/2 conv + max-pool)",
)
def resnet18(num_classes: int = 10) -> nn.Module:
    """Build torchvision's ResNet-18 unchanged, as source project 003 trained it on CIFAR-100.

    Source: seed003 (cifar100-resnet18-lightning) README, torchinfo table: the ImageNet stem is
    kept, so a 32x32 input becomes (B, 64, 16, 16) after conv1, (B, 64, 8, 8) after the
    max-pool, and (B, 512, 1, 1) after layer4; then average pool -> Linear(512, num_classes).

    Parameters: 11,181,642 (10 classes), 11,227,812 (100 classes, the source project's count).
    MACs: 37.02M per image (37.06M for 100 classes; the source project's torchinfo says 37.07M).
    """
    from torchvision.models import resnet18 as tv_resnet18  # lazy: torchvision is slow to import

    return tv_resnet18(weights=None, num_classes=check_num_classes(num_classes))


@register_model(
    "compact200k",
    source="seed004",
    description="C1..C5 compact CNN (< 200k params): separable and dilated convs, stride 2",
)
def compact200k(
    num_classes: int = 10, dropout: float = 0.1, width: float = 1.0, dilation: int = 2
) -> nn.Module:
    """Build :class:`Compact200k` (144,736 parameters at the defaults)."""
    return Compact200k(num_classes, dropout=dropout, width=width, dilation=dilation)
