"""The one error type users see: the CLI prints it, the app shows it."""


class LookalikeError(Exception):
    """A problem the user can fix (bad path, bad image, mismatched index, ...)."""


class DamagedArtefact(LookalikeError):
    """A cached or saved file does not match what was recorded when it was
    written (truncated, bit-flipped, unreadable): a cache entry is rebuilt,
    a file the user named is refused."""
