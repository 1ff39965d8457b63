"""The one exception type meant for users.

Anything a user can cause (bad file, bad column, bad option) raises :class:`ScalingError` with a one-line
message naming the file, row or field. The CLI prints it and exits non-zero; the HTTP service turns it into a
4xx. Any other exception is a bug and may show a traceback.
"""

from __future__ import annotations

import errno
import os


class ScalingError(Exception):
    """A user-facing error with a one-line message."""

    def __init__(self, message: str):
        # Keep it one line: multi-line messages break the "one clear line" contract of the CLI.
        super().__init__(" ".join(str(message).split()))


# OSErrors that say something about a path the user named rather than about the program: a name too long for the
# filesystem, a symlink loop, a missing or unreadable file, a full or read-only disk.
_PATH_ERRNOS = {errno.ENAMETOOLONG, errno.ELOOP, errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.EACCES, errno.EPERM,
                errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.ENXIO, errno.EINVAL}


def path_error_line(exc: OSError) -> str | None:
    """The one-line message for an OSError about a user's path (``name: File name too long``), else ``None``.

    The commands check the paths they are given; this is the net under those checks for what a check cannot
    foresee (Python's ``Path.exists`` itself raises for a 5000-character name), so a bad path is never a traceback.
    """
    if exc.errno not in _PATH_ERRNOS or exc.filename is None:
        return None
    name = os.fsdecode(exc.filename)
    shown = name if len(name) <= 80 else name[:77] + "..."
    return " ".join(f"{shown}: {exc.strerror or exc}".split())
