"""Procedural training data and oracles for the models that ship with jax-inpaint (see `faces`)."""
