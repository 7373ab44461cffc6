"""``python -m maskprep`` runs the command line."""

from .cli import main

# Guarded: encoding worker processes are spawned, and spawn imports this module again.
if __name__ == "__main__":
    main()
