"""The one exception type the CLI and the web layer turn into a clear message."""


class AtlasError(Exception):
    """A problem with the user's input (config, files, arguments): shown as one line, never a traceback."""


class ConfigError(AtlasError, ValueError):
    """A config value that fails validation; the message names the field."""
