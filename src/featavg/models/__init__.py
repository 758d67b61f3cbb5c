"""Models: two-layer ReLU networks stored as ensembles (leading axis S)."""

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
