"""Trained image models: train once, then attack or probe as often as you like.

``featavg train`` (and :func:`train_model` / :func:`train_models`) trains one image model
(a ResNet-18 as in the paper, or a small CNN / MLP for CPU presets) on one dataset with coarse
labels (its grouping: parity, halves or a user mapping) or fine ones, and keeps it in a
cached directory ``<root>/models/<dataset>-<labels>-<hash>/``:

* ``model.pt``: the weights and what rebuilds the model (builtin name, classes, channels,
  image size, normalisation), loadable with ``torch.load(weights_only=True)``
  (:func:`load_trained_model`);
* ``summary.json``: the config, the data (name, stand-in label, fingerprint), the
  grouping, clean accuracy per epoch, wall time, images/s and provenance;
* ``epochs.csv``: one row per epoch; ``manifest.json``: the sha256 of each file.

The hash covers the config (not ``data_dir``: the data enter through their content
fingerprint), the package version and its source, like every run directory. While a model
trains, a checkpoint is written at the end of every epoch beside the directory
(``<root>/models/.featavg-progress/<name>.pt``); a later identical call resumes from it
(bit-identical on CPU, see :class:`~featavg.training.image_sgd.ImageSGD`) unless
``resume=False``.

Several models that share data, subset sizes, seed and optimiser settings (the binary and
the 10-class model of an experiment) train in one epoch loop over the same batches
(:func:`train_models`).

Every model directory goes through the run store's one door
(:func:`featavg.runs.door.cached_runs`): claimed while it trains, so two processes (say
``mnist-robustness`` and ``mnist-linf`` started side by side) train a model once and the
second is served. Guards: a training whose estimated memory or time exceeds the machine's
(:func:`featavg.runs.guards.training_estimate`, :func:`featavg.runs.guards.check`) is refused
with one line before it starts, unless ``allow_large``. The cache is never trusted: a
model directory whose files do not match its manifest (a truncated or tampered
``model.pt``, summary or manifest) is retrained, and so is a cached ``model.pt`` that
does not load; an unreadable progress checkpoint is discarded (training starts over).
"""

from featavg.models.model_file import MODEL_FILE, MODEL_FORMAT, load_trained_model
from featavg.trained_models.cache import (
    PROGRESS,
    TrainedModel,
    model_directory,
    train_model,
    train_models,
)
from featavg.trained_models.files import identity
from featavg.trained_models.jobs import (
    NORMALIZATIONS,
    PRESETS,
    TrainJobConfig,
    build_job_model,
    job_config,
    load_job_data,
    num_classes,
    resolve_model_name,
    resolve_normalization,
)

__all__ = [
    "MODEL_FILE",
    "MODEL_FORMAT",
    "NORMALIZATIONS",
    "PRESETS",
    "PROGRESS",
    "TrainJobConfig",
    "TrainedModel",
    "build_job_model",
    "identity",
    "job_config",
    "load_job_data",
    "load_trained_model",
    "model_directory",
    "num_classes",
    "resolve_model_name",
    "resolve_normalization",
    "train_model",
    "train_models",
]
