"""The one error type users see: the CLI prints it, the app shows it."""


class LookalikeError(Exception):
    """A problem the user can fix (bad path, bad image, mismatched index, ...)."""
