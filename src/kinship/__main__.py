"""``python -m kinship``: the same as the ``kinship`` command."""

from kinship.cli import main

if __name__ == "__main__":  # worker processes (spawn) import this module too
    main(prog_name="kinship")
