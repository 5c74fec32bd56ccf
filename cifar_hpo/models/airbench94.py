"""airbench94: Keller Jordan's 94 % CIFAR-10 network (KellerJordan/cifar10-airbench,
``legacy/airbench94.py``; Jordan 2024, "94% on CIFAR-10 in 3.29 Seconds on a Single GPU",
arXiv 2404.00498), ported faithfully in our own names.

The training side of the recipe (decoupled SGD with ``bias_scaler``, the ``linear`` schedule,
Lookahead, alternating flip, TTA level 2) lives in the core as general options; the
``airbench94`` recipe in ``sweeps/recipes.yaml`` sets them.
"""

from __future__ import annotations

import torch
from torch import nn

from cifar_hpo.errors import ConfigError

from .registry import check_num_classes, check_positive, check_width, register_model, scaled

__all__ = ["Airbench94Net", "patch_whitening"]

#: airbench94's eps added to the patch-covariance eigenvalues before the 1/sqrt
WHITEN_EPS = 5e-4


class _BatchNorm(nn.BatchNorm2d):
    """airbench's BatchNorm: running-stat momentum 0.6 in airbench's convention (the share of
    the old statistics kept; PyTorch ``momentum=0.4``), eps 1e-12, weight frozen at 1, bias
    trainable."""

    def __init__(self, num_features: int, momentum: float = 0.6, eps: float = 1e-12):
        super().__init__(num_features, eps=eps, momentum=1 - momentum)
        self.weight.requires_grad = False


class _DiracConv(nn.Conv2d):
    """Conv (``same`` padding, no bias by default) whose first ``in_channels`` filters start as
    the identity (``dirac_``) on top of PyTorch's default init; a bias starts at zero."""

    def __init__(self, cin: int, cout: int, kernel_size: int = 3, padding="same", bias=False):
        super().__init__(cin, cout, kernel_size=kernel_size, padding=padding, bias=bias)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        if self.bias is not None:
            self.bias.data.zero_()
        w = self.weight.data
        nn.init.dirac_(w[: w.size(1)])


class _ConvGroup(nn.Module):
    """Conv -> MaxPool2 -> BN -> GELU -> Conv -> BN -> GELU: (B, cin, H, W) -> (B, cout, H/2,
    W/2)."""

    def __init__(self, cin: int, cout: int, bn_momentum: float) -> None:
        super().__init__()
        self.conv1 = _DiracConv(cin, cout)
        self.pool = nn.MaxPool2d(2)
        self.norm1 = _BatchNorm(cout, bn_momentum)
        self.conv2 = _DiracConv(cout, cout)
        self.norm2 = _BatchNorm(cout, bn_momentum)
        self.activ = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.activ(self.norm1(self.pool(self.conv1(x))))
        return self.activ(self.norm2(self.conv2(x)))


def patch_whitening(
    images: torch.Tensor, kernel_size: int = 2, eps: float = WHITEN_EPS
) -> torch.Tensor:
    """Filters that whiten the ``kernel_size`` x ``kernel_size`` patches of ``images``.

    The patch covariance (without centring, as airbench) is eigendecomposed; each eigenvector
    scaled by ``1 / sqrt(eigenvalue + eps)`` is a filter, followed by its negative, in order of
    decreasing eigenvalue (airbench94's ``init_whitening_conv``). Computed in float64 on the
    CPU, so every device gets the same filters.

    Args:
        images: normalized float images (N, C, H, W).
        kernel_size: patch side in pixels.
        eps: added to each eigenvalue.

    Returns:
        Conv weights (2 * C * k * k, C, k, k) in the dtype of ``images``, on the CPU.
    """
    c, k = images.shape[1], kernel_size
    x = images.detach().to("cpu", torch.float64)
    patches = x.unfold(2, k, 1).unfold(3, k, 1).transpose(1, 3).reshape(-1, c, k, k)
    flat = patches.reshape(len(patches), -1)
    covariance = flat.T @ flat / len(flat)
    eigenvalues, eigenvectors = torch.linalg.eigh(covariance, UPLO="U")
    eigenvalues, eigenvectors = eigenvalues.flip(0), eigenvectors.T.flip(0)
    filters = eigenvectors.reshape(-1, c, k, k) / torch.sqrt(eigenvalues + eps).view(-1, 1, 1, 1)
    return torch.cat((filters, -filters)).to(images.dtype)


class Airbench94Net(nn.Module):
    """airbench94's network.

    Frozen 2x2 patch-whitening conv (3 -> 24 channels, no padding; its filters come from
    :func:`patch_whitening` on the first ``init_images`` training images through
    :meth:`init_from_data`; its bias trains only in the first ``whiten_bias_epochs`` epochs)
    -> GELU -> three conv groups 64/256/256 (Conv -> MaxPool2 -> BN -> GELU -> Conv -> BN ->
    GELU, each conv's first ``in_channels`` filters dirac-initialised) -> MaxPool(3) ->
    Linear(256, num_classes, bias=False) -> x ``scale`` (1/9). BatchNorms keep 60 % of their
    running statistics per step (PyTorch momentum 0.4), eps 1e-12, weight frozen at 1.
    airbench94_muon (``airbench94_muon.py``) uses the same network with ``scale=1/256`` and
    ``head_std=1``.

    Shapes: (B, 3, 32, 32) -> (B, 24, 31, 31) -> (B, 64, 15, 15) -> (B, 256, 7, 7)
    -> (B, 256, 3, 3) -> (B, 256, 1, 1) -> (B, 256) -> (B, num_classes).

    Parameters: 1,971,352 trainable (width 1.0, 10 classes), plus 1,440 frozen (288 whitening
    weights, 1,152 BatchNorm weights); MACs: 118.1M per image (1.38x ``airbench``'s 85.8M).

    Args:
        num_classes: number of logits.
        width: multiplier of the group widths (64, 256, 256), each rounded to a multiple of 8.
        whiten_bias_epochs: epochs in which the whitening bias trains (airbench94: 3).
        bn_momentum: share of the running statistics kept per step (airbench convention).
        scale: fixed factor applied to the logits (airbench94: 1/9; airbench94_muon: 1/256,
            its ``head(x) / x.size(-1)``).
        head_std: > 0: the head's weights are rescaled to this standard deviation after
            PyTorch's init (airbench94_muon: 1, its ``w *= 1 / w.std()``); 0 keeps PyTorch's
            init (std 1 / sqrt(3 * 256) = 0.036 at width 1; airbench94).
    """

    init_images = 5000  # airbench94 whitens with the first 5,000 training images

    def __init__(
        self,
        num_classes: int = 10,
        width: float = 1.0,
        whiten_bias_epochs: int = 3,
        bn_momentum: float = 0.6,
        scale: float = 1 / 9,
        head_std: float = 0.0,
    ) -> None:
        super().__init__()
        num_classes = check_num_classes(num_classes)
        width = check_width(width)
        if isinstance(whiten_bias_epochs, bool) or not isinstance(whiten_bias_epochs, int):
            raise ConfigError(f"whiten_bias_epochs must be an integer, got {whiten_bias_epochs!r}")
        if whiten_bias_epochs < 0:
            raise ConfigError(f"whiten_bias_epochs must be >= 0, got {whiten_bias_epochs}")
        if not 0.0 <= bn_momentum < 1.0:
            raise ConfigError(f"bn_momentum must be in [0, 1), got {bn_momentum!r}")
        self.scale = check_positive(scale, "scale")
        if not 0.0 <= head_std < float("inf"):
            raise ConfigError(f"head_std must be a finite number >= 0, got {head_std!r}")
        self.whiten_bias_epochs = whiten_bias_epochs
        w1, w2, w3 = (scaled(c, width, divisor=8) for c in (64, 256, 256))
        whiten_width = 2 * 3 * 2**2
        self.whiten = _DiracConv(3, whiten_width, kernel_size=2, padding=0, bias=True)
        self.whiten.weight.requires_grad = False
        self.layers = nn.Sequential(
            nn.GELU(),
            _ConvGroup(whiten_width, w1, bn_momentum),
            _ConvGroup(w1, w2, bn_momentum),
            _ConvGroup(w2, w3, bn_momentum),
            nn.MaxPool2d(3),
        )
        self.head = nn.Linear(w3, num_classes, bias=False)
        if head_std > 0:
            with torch.no_grad():
                self.head.weight.mul_(head_std / self.head.weight.std())

    def init_from_data(self, images: torch.Tensor) -> None:
        """Set the whitening filters from normalized training images (N, 3, 32, 32)."""
        filters = patch_whitening(images, self.whiten.kernel_size[0])
        with torch.no_grad():
            self.whiten.weight.copy_(filters.to(self.whiten.weight))

    def set_epoch(self, epoch: int) -> None:
        """Train the whitening bias only before epoch ``whiten_bias_epochs`` (0-based)."""
        self.whiten.bias.requires_grad = epoch < self.whiten_bias_epochs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map normalized images (B, 3, 32, 32) to logits (B, num_classes)."""
        x = self.layers(self.whiten(x))
        return self.head(torch.flatten(x, 1)) * self.scale

    def extra_repr(self) -> str:
        return f"scale={self.scale:.4g}, whiten_bias_epochs={self.whiten_bias_epochs}"


@register_model(
    "airbench94",
    source="airbench94 (KellerJordan/cifar10-airbench legacy/airbench94.py; arXiv 2404.00498)",
    description="airbench94: frozen 2x2 patch whitening + 3 conv groups 64-256-256, GELU",
)
def airbench94(
    num_classes: int = 10,
    width: float = 1.0,
    whiten_bias_epochs: int = 3,
    bn_momentum: float = 0.6,
    scale: float = 1 / 9,
    head_std: float = 0.0,
) -> nn.Module:
    """Build :class:`Airbench94Net` (1,971,352 trainable parameters at the defaults)."""
    return Airbench94Net(num_classes, width, whiten_bias_epochs, bn_momentum, scale, head_std)
