"""Models: two-layer ReLU networks stored as ensembles with a leading axis S, exported one
at a time as ``nn.Module`` s (:mod:`.two_layer`), and the idealised feature-averaging /
feature-decoupling nets f_FA, f_FD of the paper's Fig. 1 (:mod:`.idealised`).
Image models: :mod:`.resnet`, :mod:`.small_image`, :mod:`.image_classifier`, :mod:`.builtin`."""

from featavg.models.two_layer import (
    NetConfig,
    TwoLayerEnsemble,
    TwoLayerNet,
    binary_ensemble,
    multiclass_ensemble,
    sum_form_net,
)

__all__ = [
    "NetConfig",
    "TwoLayerEnsemble",
    "TwoLayerNet",
    "binary_ensemble",
    "multiclass_ensemble",
    "sum_form_net",
]
