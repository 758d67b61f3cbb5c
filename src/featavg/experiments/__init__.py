"""Experiments: one module per experiment, registered in :mod:`featavg.experiments.registry`."""
