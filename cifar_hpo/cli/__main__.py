"""``python -m cifar_hpo.cli``."""

from cifar_hpo.cli import main

main()
