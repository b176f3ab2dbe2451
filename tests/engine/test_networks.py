"""At K = 14 the networks have the authors' sizes."""

from jokr_engine.config import preset_config
from jokr_engine.job import JokrModels


def count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_parameter_counts_match_the_authors_networks():
    config = preset_config("paper")
    assert config.num_keypoints == 14 and config.image_size == 256
    models = JokrModels(config)
    assert abs(count(models.E) - 14.15e6) < 0.01e6
    assert abs(count(models.G) - 11.41e6) < 0.01e6
    assert abs(count(models.R_A) - 11.38e6) < 0.01e6
    assert count(models.R_A) == count(models.R_B)
    assert count(models.D) == 310_401
    assert count(models.T) == 6
