"""``python -m kinship.cli``: the same as the ``kinship`` command."""

from kinship.cli.app import main

if __name__ == "__main__":  # as `python -m kinship.cli` (the usage line says so)
    main()
