"""Errors a store reports to its user: each one is a single plain line."""

# The exit code of a command that refused its input (one of these errors, on one line).
EXIT_BAD_INPUT = 2


class StoreError(Exception):
    """Something about a store that the user has to act on."""


class StoreNotFound(StoreError):
    pass


class StoreVersionError(StoreError):
    pass


class StoreBusy(StoreError):
    pass


class StoreCorrupt(StoreError):
    pass


class ImportFileError(StoreError):
    pass
