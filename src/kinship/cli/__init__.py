"""The ``kinship`` command line (entry point ``kinship = "kinship.cli:main"``).

:mod:`kinship.cli.app` builds the ``main`` group from the command modules of this package.
"""

from kinship.cli.app import main, register

__all__ = ["main", "register"]
