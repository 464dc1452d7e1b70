"""`python -m cli`: the flashstock command line without the console script."""

from cli import main

main()
