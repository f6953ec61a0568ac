"""Convolutional encoder (the seed's conv + max-pool mini-blocks) and its mirrored transposed-conv decoder."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..config import ModelConfig


def _mlp(sizes: list[int]) -> nn.Sequential:
    """Linear layers with ReLU between them and after the last."""
    layers: list[nn.Module] = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(n_in, n_out), nn.ReLU()]
    return nn.Sequential(*layers)


class ConvEncoder(nn.Module):
    """(B, 1, H, W) images -> (B, hidden_dims[-1]) features."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        shapes = config.feature_map_shapes(config.image_shape)
        blocks: list[nn.Module] = []
        in_channels = 1
        for out_channels, kernel, stride, pool in zip(
            config.channels, config.kernel_sizes, config.strides, config.pool_sizes
        ):
            # Pooling before the ReLU gives the same output (max and ReLU commute) at a quarter of the ReLU's work.
            blocks += [
                nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=kernel // 2),
                nn.MaxPool2d(pool),
                nn.ReLU(),
            ]
            in_channels = out_channels
        self.blocks = nn.Sequential(*blocks)
        self.flat_features = in_channels * math.prod(shapes[-1])
        self.head = _mlp([self.flat_features, *config.hidden_dims])
        self.out_features = config.hidden_dims[-1]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.blocks(images)  # (B, C_last, h, w)
        return self.head(features.flatten(1))  # (B, hidden)


class UpBlock(nn.Module):
    """Transposed convolution that scales (H, W) by ``scale`` and lands exactly on ``target``."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, scale: int, source: tuple, target: tuple):
        super().__init__()
        padding = kernel // 2
        # out = (in - 1) * scale - 2 * padding + (scale + 2 * padding) + output_padding = in * scale + output_padding.
        # The encoder floors by the pool, so the target exceeds in * scale by less than scale: output_padding
        # covers it. Its strided conv rounds up, so in * scale can also overshoot: the crop handles that.
        output_padding = tuple(max(0, t - s * scale) for s, t in zip(source, target))
        self.target = tuple(target)
        self.conv = nn.ConvTranspose2d(
            in_channels,
            out_channels,
            kernel_size=scale + 2 * padding,
            stride=scale,
            padding=padding,
            output_padding=output_padding,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)  # (B, C_out, >= H, >= W)
        return x[..., : self.target[0], : self.target[1]]  # (B, C_out, H, W)


class ConvDecoder(nn.Module):
    """(B, latent_dim + condition_dim) codes (and conditions) -> (B, 1, H, W) logits, mirroring the encoder block
    by block."""

    def __init__(self, config: ModelConfig, condition_dim: int = 0):
        super().__init__()
        shapes = config.feature_map_shapes(config.image_shape)
        self.start_shape = (config.channels[-1], *shapes[-1])
        self.head = _mlp([config.latent_dim + condition_dim, *reversed(config.hidden_dims), math.prod(self.start_shape)])
        blocks: list[nn.Module] = []
        out_channels = [*reversed(config.channels[:-1]), 1]
        in_channels = config.channels[-1]
        for i, block in enumerate(reversed(range(config.n_blocks))):
            scale = config.strides[block] * config.pool_sizes[block]
            blocks.append(
                UpBlock(in_channels, out_channels[i], config.kernel_sizes[block], scale, shapes[block + 1], shapes[block])
            )
            if i < config.n_blocks - 1:
                blocks.append(nn.ReLU())
            in_channels = out_channels[i]
        self.blocks = nn.Sequential(*blocks)
        final = self.blocks[-1].conv
        nn.init.constant_(final.bias, config.output_bias_init)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        features = self.head(codes).view(-1, *self.start_shape)  # (B, C_last, h, w)
        return self.blocks(features)  # (B, 1, H, W)
