"""Errors caused by the user's input: the CLI prints them without a traceback and exits with 2."""


class InputError(ValueError):
    """Bad input (a file, an option, a checkpoint): the message says what and where."""


class Notice(UserWarning):
    """Not an error, but something the user should know (a prompt cut to CLIP's context length): the
    library emits it with `notice`; the CLI prints each distinct one once, as `note: ...` on stderr."""


def notice(message: str) -> None:
    import warnings

    warnings.warn(message, Notice, stacklevel=3)


def brief(value) -> str:
    """A short, bounded repr of a value for error messages: safe on huge, deep or shared-reference
    values (a plain repr() of a hostile pickle's DAG would never finish)."""
    import reprlib

    r = reprlib.Repr()
    r.maxstring, r.maxother, r.maxlevel, r.maxlist, r.maxdict, r.maxtuple = 60, 40, 2, 4, 4, 6
    return r.repr(value)
