"""Errors a store reports to its user: each one is a single plain line."""


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
