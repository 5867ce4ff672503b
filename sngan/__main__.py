"""`python -m sngan ...` (and `torchrun -m sngan ...`) run the CLI."""

from sngan.cli import main

main()
