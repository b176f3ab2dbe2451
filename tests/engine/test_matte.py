"""The rendered alpha: a solid matte with a narrow edge, no haze of nearly transparent pixels."""

import torch

from jokr_engine.infer import matte, to_uint8_rgba


def soft_disc(size: int = 64, blur: float = 3.0) -> torch.Tensor:
    """A sigmoid-edged disc like G's output: never exactly 0 or 1 anywhere."""
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    distance = ((xx - 31.5) ** 2 + (yy - 31.5) ** 2).float().sqrt()
    return torch.sigmoid((18 - distance) / blur)[None, None]


def test_alpha_is_zero_outside_solid_inside_and_has_no_haze():
    silhouette = soft_disc()
    alpha = to_uint8_rgba(torch.zeros(1, 3, 64, 64), silhouette)[0, :, :, 3].astype(int)
    nonzero = alpha[alpha > 0]
    haze = ((nonzero >= 1) & (nonzero <= 25)).sum()
    assert haze / nonzero.size < 0.05, f"{haze} of {nonzero.size} visible pixels are haze (alpha 1–25)"
    assert (alpha[silhouette[0, 0] < 0.45] == 0).all()
    assert (alpha[silhouette[0, 0] > 0.55] == 255).all()
    partial = ((alpha > 0) & (alpha < 255)).sum() / (alpha > 0).sum()
    assert partial < 0.2, "only a narrow edge is partly transparent"


def test_matte_edge_sits_on_the_half_contour():
    values = torch.tensor([0.0, 0.2, 0.45, 0.5, 0.55, 0.9, 1.0]).view(1, 1, 1, -1)
    assert matte(values).flatten().tolist() == [0.0, 0.0, 0.0, 0.5, 1.0, 1.0, 1.0]
