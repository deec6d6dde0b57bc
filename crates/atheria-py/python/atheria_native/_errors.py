"""The exceptions atheria_native raises (the extension module raises these classes).

Kept in a module of their own, importing nothing of the extension, so the
extension can import them while the package itself is still importing.
"""


class AtheriaError(Exception):
    """Any error of the Atheria engine; the message is the library's, in one line."""


class InvalidInput(AtheriaError, ValueError):
    """An argument, array, model package or state file that cannot be used.

    Nothing was changed.
    """


class StepFailed(AtheriaError, RuntimeError):
    """A step (or the backend running the law) failed.

    The state is exactly as it was before the failed step.
    """
