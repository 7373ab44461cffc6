"""``python -m maskprep`` runs the command line, as the ``maskprep`` program does
(:func:`maskprep.launch.main`)."""

from .launch import main

if __name__ == "__main__":
    main()
