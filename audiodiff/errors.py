"""User-facing errors: one line that names what was wrong, what was expected and how to fix it.

The CLI prints these without a traceback (unless ``--debug``) and exits non-zero; library users catch
``AudiodiffError`` (a ``ValueError``) like any other bad-argument error.
"""


class AudiodiffError(ValueError):
    """Bad input or configuration that the user can fix; the message says how."""
