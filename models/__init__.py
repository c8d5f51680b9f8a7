"""Encoders, heads and losses of VSE0, VSE++, PVSE (K=1, K=2) and PCME on one shared stack."""
