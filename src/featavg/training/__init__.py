"""Training.

* :mod:`.interface`: the :class:`Trainer` protocol every model family's trainer implements
  (``fit(models, x, targets) -> records``) and :class:`FactoredInputs` (inputs known only
  through preactivations and weight gradients);
* :mod:`.two_layer_gd`: full-batch GD / mini-batch SGD of two-layer ReLU ensembles with exact
  hand-derived gradients (:func:`train`, :func:`train_many`, :class:`TwoLayerGD`);
* :mod:`.two_layer_engines`: its two exact formulations, direct O(S M n d) and Gram
  O(S M n^2) per step;
* :mod:`.adversarial`: L2 PGD adversarial training of two-layer ensembles (row-space PGD,
  factored adversarial inputs);
* :mod:`.image_sgd`: SGD for image models (ResNets, CNNs) over uint8 data held on the device,
  several models per data pass (:class:`ImageSGD`, :class:`SGDConfig`), with
  :mod:`.augment` (batched crop + flip) and :mod:`.checkpoint` (atomic, weights-only
  checkpoints; bit-identical resume on CPU).
"""

from featavg.training.image_sgd import ImageSGD, SGDConfig
from featavg.training.interface import FactoredInputs, Record, Trainer
from featavg.training.two_layer_engines import (
    GRAM_MEMORY_LIMIT,
    DirectEngine,
    GramEngine,
    choose_formulation,
    gram_matrices,
)
from featavg.training.two_layer_gd import (
    TrainConfig,
    TrainingDiverged,
    TrainOptions,
    TwoLayerGD,
    accuracy,
    backprop,
    logit_gradient,
    train,
    train_many,
)

__all__ = [
    "TrainOptions",
    "GRAM_MEMORY_LIMIT",
    "DirectEngine",
    "FactoredInputs",
    "GramEngine",
    "ImageSGD",
    "Record",
    "SGDConfig",
    "TrainConfig",
    "Trainer",
    "TrainingDiverged",
    "TwoLayerGD",
    "accuracy",
    "backprop",
    "choose_formulation",
    "gram_matrices",
    "logit_gradient",
    "train",
    "train_many",
]
