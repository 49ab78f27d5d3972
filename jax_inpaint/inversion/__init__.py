"""Masked latent search: options, objective, the compiled search, the inpainting driver and its outputs."""
