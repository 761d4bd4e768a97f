"""The command-line entry points: one thin Hydra application per `vadmil` command (``cli.py`` maps names)."""
