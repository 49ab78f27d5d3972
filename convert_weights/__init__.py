"""Offline conversion of user checkpoints into jax-inpaint model folders.

Nothing here executes code from a checkpoint: pickles are read with restricted unpicklers that
resolve an allow-list of globals and refuse everything else.
"""
