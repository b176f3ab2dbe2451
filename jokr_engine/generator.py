"""The CycleGAN ResNet generator, used for the shape generator G (K keypoint maps → two silhouettes,
one per domain: channel 0 in A's shape, channel 1 in B's) and the texture refiners R_A, R_B
(silhouette → RGB)."""

from __future__ import annotations

import torch
from torch import nn

from .config import Config


class ResnetBlock(nn.Module):
    def __init__(self, channels: int, dropout: float):
        super().__init__()
        layers = [nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), nn.InstanceNorm2d(channels), nn.ReLU(True)]
        if dropout:
            layers.append(nn.Dropout(dropout))
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), nn.InstanceNorm2d(channels)]
        self.body = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.body(x)


class ResnetGenerator(nn.Module):
    """c7s1-64, d128, d256, `blocks` × R256, u128, u64, c7s1-out (Zhu et al.), then `output` activation."""

    def __init__(self, in_channels: int, out_channels: int, channels: int, blocks: int, dropout: float,
                 output: str):
        super().__init__()
        layers = [nn.ReflectionPad2d(3), nn.Conv2d(in_channels, channels, 7), nn.InstanceNorm2d(channels),
                  nn.ReLU(True)]
        for i in range(2):
            width = channels * 2**i
            layers += [nn.Conv2d(width, width * 2, 3, stride=2, padding=1), nn.InstanceNorm2d(width * 2),
                       nn.ReLU(True)]
        layers += [ResnetBlock(channels * 4, dropout) for _ in range(blocks)]
        for i in range(2):
            width = channels * 2 ** (2 - i)
            layers += [nn.ConvTranspose2d(width, width // 2, 3, stride=2, padding=1, output_padding=1),
                       nn.InstanceNorm2d(width // 2), nn.ReLU(True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(channels, out_channels, 7)]
        layers.append(nn.Sigmoid() if output == "sigmoid" else nn.Tanh())
        self.model = nn.Sequential(*layers)
        self.apply(_init_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def _init_weights(module: nn.Module) -> None:
    # CycleGAN's "normal" initialisation: N(0, 0.02) weights, zero biases.
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        nn.init.zeros_(module.bias)


def shape_generator(config: Config) -> ResnetGenerator:
    """G: keypoint maps → silhouettes of both domains (they share all but the last layer's channels)."""
    return ResnetGenerator(config.num_keypoints, 2, config.gen_channels, config.gen_blocks, config.gen_dropout,
                           output="sigmoid")


def texture_refiner(config: Config) -> ResnetGenerator:
    """R_A or R_B: a silhouette, repeated to 3 channels as in the authors' code → image in [-1, 1]."""
    return ResnetGenerator(3, 3, config.gen_channels, config.gen_blocks, config.gen_dropout, output="tanh")
