"""The one exception type meant for users.

Anything a user can cause (bad file, bad column, bad option) raises :class:`ScalingError` with a one-line
message naming the file, row or field. The CLI prints it and exits non-zero; the HTTP service turns it into a
4xx. Any other exception is a bug and may show a traceback.
"""

from __future__ import annotations


class ScalingError(Exception):
    """A user-facing error with a one-line message."""

    def __init__(self, message: str):
        # Keep it one line: multi-line messages break the "one clear line" contract of the CLI.
        super().__init__(" ".join(str(message).split()))
