"""The simulator's one user-facing error."""

from p3log.settings import SettingsError


class SimConfigError(SettingsError):
    """A scenario, devices file or other simulator setting that cannot be used; one line."""
