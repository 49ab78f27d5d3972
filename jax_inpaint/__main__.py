from jax_inpaint.cli import main

main(prog_name="jax-inpaint")
