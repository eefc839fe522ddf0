"""The feature store's one error: a store that cannot be written, said in words.

A cell writes to the store its entries, the locks that make concurrent cells extract once and
the holds that keep shared entries (:mod:`asvp.features.holds`). When the store's folder is
read-only, not a folder, or on a full disk, the operating system's error names a file deep
inside it; :func:`store_writes` turns it into a :class:`FeatureStoreError` that names the store,
what went wrong and what to do. Nothing the cell recorded is lost: the error ends the cell like
any other (its run is marked failed with this message) and its finished rounds stay in its
round checkpoint, so running the grid again resumes it.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

READ_ONLY = frozenset({errno.EROFS, errno.EACCES, errno.EPERM})
FULL = frozenset({errno.ENOSPC, errno.EDQUOT})
NOT_A_FOLDER = frozenset({errno.ENOTDIR, errno.EEXIST})

_AGAIN = (
    "then run the grid again: the cell's finished rounds are kept in its round checkpoint and "
    "it resumes after the last of them"
)


class FeatureStoreError(OSError):
    """The feature store at :attr:`root` cannot be written (read-only, not a folder, full);
    ``errno`` is the operating system's."""

    def __init__(self, root: Path, error: OSError) -> None:
        self.root = root
        where = f"writing {error.filename}" if error.filename else "writing"
        reason = f"{error.strerror or error} ({where})"
        if error.errno in FULL:
            problem = f"is on a full disk: {reason}"
            remedy = "free space there, or point the grid's feature_store at a folder with room"
        elif error.errno in NOT_A_FOLDER:
            problem = f"is not a folder: {reason}"
            remedy = "point the grid's feature_store at a folder (or a path that does not exist)"
        else:
            problem = f"is not writable: {reason}"
            remedy = (
                "make it writable for this user, or point the grid's feature_store at a "
                "writable folder (cells write their features, locks and holds there)"
            )
        super().__init__(error.errno, f"feature store {root} {problem}; {remedy}, {_AGAIN}")

    def __str__(self) -> str:
        return self.strerror or ""

    @property
    def read_only(self) -> bool:
        """Whether the store refused writing (as opposed to being full or not a folder)."""
        return self.errno in READ_ONLY


@contextmanager
def store_writes(root: Path) -> Iterator[None]:
    """Turn the operating system's errors of a store that cannot be written into
    :class:`FeatureStoreError` (other errors pass unchanged)."""
    try:
        yield
    except FeatureStoreError:
        raise
    except OSError as error:
        if error.errno in READ_ONLY | FULL | NOT_A_FOLDER:
            raise FeatureStoreError(root, error) from error
        raise
