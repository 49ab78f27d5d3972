"""jax-inpaint: fill the missing part of an image with a pretrained StyleGAN2, in JAX."""
from jax_inpaint.errors import InputError
from jax_inpaint.stylegan2 import (Discriminator, Generator, GeneratorConfig, DiscriminatorConfig,
                                   load_discriminator, load_generator)

__version__ = "0.1.0"
