"""Errors caused by the user's input: the CLI prints them without a traceback and exits with 2."""


class InputError(ValueError):
    """Bad input (a file, an option, a checkpoint): the message says what and where."""


class Notice(UserWarning):
    """Not an error, but something the user should know (a prompt cut to CLIP's context length): the
    library emits it with `notice`; the CLI prints each distinct one once, as `note: ...` on stderr."""


def notice(message: str) -> None:
    import warnings

    warnings.warn(message, Notice, stacklevel=3)
