"""The settings of :class:`~featavg.training.image_sgd.ImageSGD`: :class:`SGDConfig`.

The optimiser runs in float32 (the weights' type), so every float setting must be a finite
float32 value: a learning rate of 1e300 would overflow to inf on the first step. Such values
are refused when the config is built, one line naming the field.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# the float32 range the optimiser computes in: the largest finite value, and the smallest
# positive normal one (a positive learning rate below it rounds to 0 or a denormal, and
# training would silently not move)
FLOAT32_MAX = 3.4028234663852886e38
FLOAT32_TINY = 1.1754943508222875e-38


class SGDConfig(BaseModel):
    """SGD with momentum on cross-entropy, per-step learning-rate schedule, optional
    crop+flip augmentation and the CUDA speed settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    epochs: int = Field(10, ge=1, description="passes over the training set")
    batch_size: int = Field(128, ge=1, description="images per step (last partial batch kept)")
    lr: float = Field(0.01, gt=0.0, description="learning rate (onecycle: its maximum)")
    momentum: float = Field(0.9, ge=0.0, lt=1.0, description="SGD momentum")
    weight_decay: float = Field(0.0, ge=0.0, description="L2 penalty of torch.optim.SGD")
    nesterov: bool = Field(False, description="Nesterov momentum (needs momentum > 0)")
    schedule: Literal["none", "cosine", "onecycle"] = Field(
        "none", description="lr per step: constant, cosine to 0, or one-cycle (max lr)"
    )
    augment: Literal["none", "crop-flip"] = Field(
        "none", description="random crop with zero padding + horizontal flip, or none"
    )
    crop_padding: int = Field(4, ge=0, le=64, description="zero padding of the random crop")
    amp: Literal["auto", "off", "bf16"] = Field(
        "auto", description="bf16 autocast; auto: on for CUDA, off on CPU"
    )
    channels_last: Literal["auto", "on", "off"] = Field(
        "auto", description="channels_last memory format; auto: on (faster on CPU and CUDA)"
    )
    compile: bool = Field(False, description="torch.compile the models (CUDA only)")
    eval_batch_size: int = Field(1024, ge=1, description="images per evaluation batch")

    @field_validator("lr", "momentum", "weight_decay")
    @classmethod
    def _float32_range(cls, value: float) -> float:
        # the ranges above are checked first (gt/ge), so value is a number >= 0 here
        if not value <= FLOAT32_MAX:  # also catches NaN and inf
            raise ValueError(
                f"must be a finite number at most {FLOAT32_MAX:.4g} (float32, the type the "
                f"optimiser computes in), got {value:g}"
            )
        if 0.0 < value < FLOAT32_TINY:
            raise ValueError(
                f"must be at least {FLOAT32_TINY:.4g} when positive (smaller values vanish in "
                f"float32, the type the optimiser computes in), got {value:g}"
            )
        return value

    @model_validator(mode="after")
    def _nesterov_needs_momentum(self) -> SGDConfig:
        if self.nesterov and self.momentum == 0.0:
            raise ValueError("nesterov: needs momentum > 0")
        return self
