"""featavg: feature averaging in two-layer ReLU networks (Li, Pan, Lyu, Li; ICLR 2025).

Gradient descent on coarse (binary) labels makes a two-layer ReLU net learn the average of
the class's cluster features; that average is the direction an adversary exploits.
Fine-grained (cluster) labels make it learn each feature and become far more robust.
"""

__version__ = "0.1.0"
