"""The patch front end of G2GNet (seed 000, §IV-A) and the inverse of cortexnet's row encoding of images."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def rows_to_images(x: Tensor, channels: int) -> Tensor:
    """Undo the row encoding of images: ``(B, T, F)`` → ``(B, C, H, W)`` with H = T, C = ``channels``,
    W = F / C.

    cortexnet feeds images as sequences of rows (``cortexnet.data.images_to_row_sequences``): grey images
    ``(H, W)`` become T = H steps of F = W pixels (MNIST 28 × 28, digits 8 × 8); colour images ``(C, H, W)``
    become T = H steps of F = C·W inputs, *channel-blocked* — step t is row t of channel 0, then of channel 1,
    then of channel 2 (CIFAR: 32 × 96). So a step reshapes to ``(C, W)`` and the channel axis moves in front.

    Args:
        x: ``(B, T, F)`` row sequences.
        channels: C ≥ 1, which must divide F.

    Returns:
        ``(B, C, T, F / C)`` images (a view-compatible permutation, no pixel values change).
    """
    if x.dim() != 3:
        raise ValueError(f"row sequences must be (B, T, F), got shape {tuple(x.shape)}")
    if channels < 1 or x.shape[-1] % channels:
        raise ValueError(
            f"channels must be >= 1 and divide the {x.shape[-1]} inputs per step, got {channels}; "
            "grey images have 1 channel, CIFAR's channel-blocked rows 3"
        )
    b, t, f = x.shape
    return x.reshape(b, t, channels, f // channels).permute(0, 2, 1, 3)


class PatchEmbedding(nn.Module):
    """Cut each image into a ``g × g`` grid of equal patches and apply one convolution to every patch
    independently; concatenate the patch embeddings (G2GNet, seed 000: 16 patches, 32 output channels).

    Implemented as one ``nn.Conv2d`` with kernel = stride = patch size: each output position sees exactly one
    patch and all patches share the convolution's weights. The output is *patch-major* — feature index
    ``patch · out_channels + channel``, patches in row-major grid order — so that the index grouping of the
    next (G2G) layer puts whole patches in one group (the paper: with 16 patches and G = 8 "each group ...
    corresponds to two input patches") and the interleaved grouping puts equal channels in one group.

    Initialisation: ``nn.Conv2d``'s default, W, b ~ U(±1/sqrt(C · patch_h · patch_w)), from ``generator``.

    Args:
        channels, height, width: image geometry C, H, W (pixels).
        patches_per_side: g ≥ 1; g must divide H and W (paper: g = 4, 16 patches; CIFAR 8 × 8-pixel patches,
            MNIST 7 × 7, digits 2 × 2).
        out_channels: convolution output channels per patch, ≥ 1 (paper: 32).
        generator: explicit CPU generator for the initial values.
    """

    def __init__(
        self,
        channels: int,
        height: int,
        width: int,
        *,
        patches_per_side: int = 4,
        out_channels: int = 32,
        generator: torch.Generator,
    ) -> None:
        super().__init__()
        if min(channels, height, width) < 1:
            raise ValueError(f"image geometry must be positive, got C={channels}, H={height}, W={width}")
        g = patches_per_side
        if g < 1 or height % g or width % g:
            raise ValueError(
                f"patches_per_side must be >= 1 and divide the image height {height} and width {width}, got {g}"
            )
        if out_channels < 1:
            raise ValueError(f"out_channels must be >= 1, got {out_channels}")
        self.channels, self.height, self.width = channels, height, width
        self.patches_per_side, self.out_channels = g, out_channels
        self.patch_size = (height // g, width // g)
        self.conv = nn.Conv2d(channels, out_channels, kernel_size=self.patch_size, stride=self.patch_size)
        bound = 1.0 / math.sqrt(channels * self.patch_size[0] * self.patch_size[1])
        with torch.no_grad():
            self.conv.weight.copy_((torch.rand(self.conv.weight.shape, generator=generator) * 2 - 1) * bound)
            self.conv.bias.copy_((torch.rand(out_channels, generator=generator) * 2 - 1) * bound)

    @property
    def n_patches(self) -> int:
        """g², the number of patches per image."""
        return self.patches_per_side**2

    @property
    def out_features(self) -> int:
        """Embedding width: patches × output channels."""
        return self.n_patches * self.out_channels

    def forward(self, images: Tensor) -> Tensor:
        """images ``(B, C, H, W)`` → patch-major embeddings ``(B, n_patches · out_channels)``."""
        if images.dim() != 4 or tuple(images.shape[1:]) != (self.channels, self.height, self.width):
            raise ValueError(
                f"images must be (B, {self.channels}, {self.height}, {self.width}), got {tuple(images.shape)}"
            )
        y = self.conv(images)  # (B, out_channels, g, g)
        return y.flatten(2).transpose(1, 2).reshape(images.shape[0], -1)

    def parameter_count(self) -> int:
        """Convolution weights plus biases."""
        return sum(p.numel() for p in self.parameters())

    def extra_repr(self) -> str:
        return f"patches={self.n_patches} of {self.patch_size[0]}x{self.patch_size[1]} px, out_channels={self.out_channels}"
