"""Contrast-invariant 3D UNet foundation encoder (16 feature channels), its training and inference.

Submodules (import directly; this file stays light): network, loss, train, weights, inference, cli.
"""
