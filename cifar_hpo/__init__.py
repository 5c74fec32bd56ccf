"""cifar-hpo: hyperparameter sweeps and experiment tracking for CNN classifiers on CIFAR-10/100."""

__version__ = "0.1.0"
