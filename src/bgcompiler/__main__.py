"""`python -m bgcompiler` is the same as the `bg-compiler` command."""

from bgcompiler.cli import main

main()
