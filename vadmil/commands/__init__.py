"""The command-line entry points: one thin Hydra application per `vadmil` command (``cli.py`` maps names)."""

from vadmil.commands.catalog import register_resolvers

register_resolvers()  # ${vadmil.heads:} in conf/sweep/*.yaml
