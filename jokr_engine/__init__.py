"""JOKR engine: trains the JOKR keypoint model on two clips and renders retargeted frames."""

__version__ = "0.1.0"
