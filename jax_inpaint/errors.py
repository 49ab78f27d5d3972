"""Errors caused by the user's input: the CLI prints them without a traceback and exits with 2."""


class InputError(ValueError):
    """Bad input (a file, an option, a checkpoint): the message says what and where."""
