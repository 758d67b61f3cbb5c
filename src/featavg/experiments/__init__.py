"""Experiments: one module per experiment, each ending in an ``EXPERIMENT`` object.

- :mod:`.spec`: :class:`~.spec.Experiment` (what an experiment declares about itself:
  config, run, claim, checks, tables, figures, reproduce preset, tiny test config) and its
  :class:`~.spec.Check` / :class:`~.spec.GridCheck` / :class:`~.spec.Claim` rows;
- :mod:`.registry`: the list of experiment modules, name -> experiment, the reproduce plan;
- :mod:`.runner`: run one into its run directory (cache, output checked against the
  declaration, atomic files); :mod:`.output`: what ``run`` returns and the per-seed
  aggregation; :mod:`.summary`: which summary entries are metrics;
- ``synthetic_*``: the synthetic experiments, and the pieces they share
  (:mod:`.synthetic_common`: the trained binary / fine-grained pair;
  :mod:`.synthetic_attack`: the four read-outs and their attack protocol;
  :mod:`.tolerances`: the verdict tolerances).
"""
