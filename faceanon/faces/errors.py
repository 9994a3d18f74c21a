"""The two errors of face analysis: a model pack or runtime that cannot be used, and an image without a face."""

class FaceModelError(RuntimeError):
    """A face model pack, file or runtime is missing or broken; the message says what to do."""


class NoFaceError(RuntimeError):
    """No face was found in some image and the caller asked for an error."""
