"""The errors of the FaceID loader: a file that is not a usable FaceID file, a file that does not fit the model."""


class FaceIDFileError(ValueError):
    """A file that is not a usable IP-Adapter FaceID file; the message says which file, what and how to fix."""


class FaceIDMismatchError(ValueError):
    """A FaceID file that does not fit the model it is applied to."""
