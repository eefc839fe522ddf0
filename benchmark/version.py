"""The version ``asvp-bench --version`` prints: the installed package's, and the git commit of
the checkout it runs from (when it runs from one), so that a bug report names the exact code."""

from __future__ import annotations

import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

__all__ = ["DISTRIBUTION", "git_commit", "package_version", "version_text"]

DISTRIBUTION = "asvp-bench"
"""The distribution name in ``pyproject.toml``."""

_CHECKOUT = Path(__file__).resolve().parents[1]


def package_version() -> str:
    """The installed distribution's version (``importlib.metadata``), or ``unknown`` when the
    package runs without being installed."""
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        return "unknown (not installed)"


def git_commit() -> str | None:
    """The short commit of the git checkout holding this package, with ``-dirty`` when files
    differ from it; None outside a checkout or without git (one ``git`` call, ~10 ms)."""
    if not (_CHECKOUT / ".git").exists():
        return None
    try:
        found = subprocess.run(
            ["git", "-C", str(_CHECKOUT), "describe", "--always", "--dirty", "--abbrev=10"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if found.returncode != 0:
        return None
    return found.stdout.strip() or None


def version_text() -> str:
    """``asvp-bench 0.1.0 (git 1a2b3c4d5e)``; without the commit outside a checkout."""
    commit = git_commit()
    return f"{DISTRIBUTION} {package_version()}" + (f" (git {commit})" if commit else "")
