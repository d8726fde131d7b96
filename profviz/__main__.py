"""``python -m profviz`` runs the command line."""

from .cli import main

main(prog_name="profviz")
