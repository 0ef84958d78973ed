"""``python -m mood_dpa``: the same as the ``mood-dpa`` command."""

from .cli import main

if __name__ == "__main__":
    main()
