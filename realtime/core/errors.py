"""The error a session's set-up raises when it cannot do what was asked."""


class SetupError(Exception):
    """A user error (a missing file or model, a folder in the way): the message says what
    to do. The commands print it as one line and exit with status 2."""
