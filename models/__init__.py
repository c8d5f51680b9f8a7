"""Encoders, heads and losses of VSE0, VSE++, PVSE (K=1, K=2) and PCME on one shared stack."""

from models.model import METHODS, CrossModalModel, build_model
from models.pcme import match_probability

__all__ = ["METHODS", "CrossModalModel", "build_model", "match_probability"]
