"""Models for ``featavg probe``: a user factory, a featavg model file, or a builtin + weights.

* ``--model MODULE:FACTORY``: imports MODULE (a dotted module name, looked up in the current
  directory first and then on ``sys.path``, as ``python -m`` does; or a path to a ``.py``
  file) and calls ``FACTORY()`` with no arguments; it must return an ``nn.Module`` that maps
  [0, 1] pixels (N, C, H, W) to logits. This runs the user's own code: the code the user
  chose to run, like ``python -c``. Whatever that code raises (at import, in the factory,
  in the first forward pass) ends the command with one line saying what the model did and
  what the probe expects, exit code 2. ``--checkpoint`` then loads a state dict into it
  (strictly).
* ``--checkpoint PATH`` alone, a featavg ``model.pt`` (``featavg train``): the model
  rebuilds itself (:func:`featavg.models.model_file.load_trained_model`, every field
  checked); the data set and grouping it was trained with become the defaults.
* ``--builtin NAME --checkpoint PATH``: a builtin architecture
  (:data:`featavg.models.builtin.BUILTIN_MODELS`) with a plain state dict (keys with or
  without ``net.``), sized for the data; the number of outputs is read from ``fc.weight``
  unless given.

Every checkpoint is read with ``torch.load(weights_only=True)``
(:func:`featavg.torch_files.load_checkpoint`): a file that would need pickle code
execution is refused with a one-line ConfigError that names the conversion.

:func:`check_model_fits` runs a model once on a few inputs before the probe's passes and
checks that it returns what the probe needs: floating logits (N, O), differentiable with
respect to the input; logits that are NaN or inf there are a numerical fault (exit code 3),
as they are on any later batch.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

from featavg.attacks.incremental import eval_mode
from featavg.config import ConfigError
from featavg.data.images import ImageDataset
from featavg.faults import NumericalFault, one_line
from featavg.models.backbone_file import file_sha256, state_tensors


@dataclass
class LoadedModel:
    """model (eval mode), info: JSON-able facts that identify it (part of the probe's
    identity), trained_on: the featavg model file's data and grouping (None otherwise)."""

    model: nn.Module
    info: dict[str, Any]
    trained_on: dict[str, Any] | None = None


def user_code_error(what: str, err: BaseException) -> ConfigError:
    """The one-line error for user code ``what`` (e.g. "--model: mynet:make()") that raised
    ``err`` or called ``sys.exit``: bad input (exit code 2), never a traceback."""
    if isinstance(err, SystemExit):
        return ConfigError(f"{what} called sys.exit({err.code!r}) instead of returning")
    text = one_line(err, 100) if str(err).strip() else ""
    return ConfigError(f"{what} raised {type(err).__name__}" + (f": {text}" if text else ""))


@contextlib.contextmanager
def _importable_from_cwd() -> Iterator[None]:
    """The current directory first on ``sys.path`` for the block, as ``python -m`` has it
    (a console script does not), unless it is there already."""
    cwd = os.getcwd()
    added = cwd not in sys.path and "" not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        yield
    finally:
        if added and cwd in sys.path:
            sys.path.remove(cwd)


def _import_module(module_name: str) -> ModuleType:
    """MODULE of ``--model``: a ``.py`` file or a dotted name (see the module docstring)."""
    if not module_name.endswith(".py"):
        return importlib.import_module(module_name)
    path = Path(module_name).expanduser()
    if not path.is_file():
        raise ConfigError(f"--model: file {path} not found")
    loader = importlib.util.spec_from_file_location(path.stem, path)
    if loader is None or loader.loader is None:
        raise ConfigError(f"--model: cannot import {path}")
    module = importlib.util.module_from_spec(loader)
    sys.modules[path.stem] = module
    try:
        loader.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(path.stem, None)
        raise
    return module


def import_factory(spec: str) -> nn.Module:
    """``MODULE:FACTORY`` -> ``FACTORY()``, which must be an ``nn.Module`` (runs user code).
    ConfigError (one line) when the module cannot be imported (not found, a syntax error,
    an exception or ``sys.exit`` at import), has no such callable, or the call fails or
    returns something else."""
    module_name, sep, attr = spec.rpartition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"--model: expected MODULE:FACTORY (e.g. mypkg.nets:make), got {spec!r}")
    with _importable_from_cwd():
        try:
            module = _import_module(module_name)
        except ConfigError:
            raise
        except ImportError as err:
            raise ConfigError(f"--model: cannot import {module_name!r} ({err})") from None
        except SyntaxError as err:
            where = f" at {Path(err.filename or module_name).name}:{err.lineno}"
            raise ConfigError(
                f"--model: cannot import {module_name!r} (SyntaxError: {err.msg}{where})"
            ) from None
        except (Exception, SystemExit) as err:  # the user's module failing is bad input
            raise user_code_error(f"--model: importing {module_name!r}", err) from None
        factory = getattr(module, attr, None)
        if not callable(factory):
            raise ConfigError(f"--model: {module_name!r} has no callable {attr!r}")
        try:
            model = factory()
        except (Exception, SystemExit) as err:  # the user's code failing is bad input
            raise user_code_error(f"--model: {spec}()", err) from None
    if not isinstance(model, nn.Module):
        raise ConfigError(f"--model: {spec} returned {type(model).__name__}, not an nn.Module")
    _check_materialised(model, f"--model: {spec}() returned a model with")
    return model


def _check_materialised(model: nn.Module, what: str) -> None:
    """ConfigError when a parameter or buffer of ``model`` has no values (meta device)."""
    tensors = [*model.parameters(), *model.buffers()]
    if any(t.is_meta for t in tensors):
        raise ConfigError(
            f"{what} parameters on the meta device (shapes without values); the probe needs "
            "real weights: load or initialise them first"
        )


def _to_device(model: nn.Module, device: torch.device | str, what: str) -> nn.Module:
    try:
        return model.to(device).eval()
    except (Exception, SystemExit) as err:  # a user module's own to() or eval()
        raise user_code_error(f"{what}: moving it to {device}", err) from None


def load_model(
    *,
    factory: str | None,
    builtin: str | None,
    checkpoint: str | None,
    data: ImageDataset | None,
    dataset_name: str | None,
    num_classes: int | None = None,
    normalization: str | None = None,
    device: torch.device | str = "cpu",
) -> LoadedModel:
    """The model the CLI options describe (see the module docstring), on ``device`` in eval
    mode. ``data`` gives the input size of a builtin; ``dataset_name`` its default
    normalisation. ConfigError (one line) on anything that does not fit."""
    from featavg.models.model_file import MODEL_FORMAT, load_trained_model, model_file_path
    from featavg.torch_files import load_checkpoint

    if factory is not None and builtin is not None:
        raise ConfigError("--model and --builtin: give one of them, not both")
    path = model_file_path(checkpoint) if checkpoint is not None else None
    blob = load_checkpoint(path, map_location="cpu") if path is not None else None
    info: dict[str, Any] = {}
    if path is not None:
        info["checkpoint_sha256"] = file_sha256(path)
    if factory is not None:
        model = import_factory(factory)
        info.update(source="factory", factory=factory)
        if blob is not None and path is not None:
            try:
                model.load_state_dict(state_tensors(blob, path))
            except RuntimeError as err:
                raise ConfigError(
                    f"{path}: does not fit {factory} ({one_line(err, 160)})"
                ) from None
            except (Exception, SystemExit) as err:  # the user module's own load_state_dict
                raise user_code_error(f"--model: {factory}().load_state_dict", err) from None
        return LoadedModel(_to_device(model, device, f"--model: {factory}()"), info)
    if blob is None or path is None:
        raise ConfigError("--checkpoint: needed with --builtin (or give --model MODULE:FACTORY)")
    if blob.get("format") == MODEL_FORMAT:
        model, meta = load_trained_model(path, str(device))
        if builtin is not None and builtin != meta["model"]:
            raise ConfigError(f"--builtin: {path} holds a {meta['model']}, not a {builtin}")
        info.update(source="featavg model file", builtin=meta["model"])
        trained_on = {"dataset": meta.get("dataset"), "grouping": meta.get("grouping")}
        return LoadedModel(model, info, trained_on)
    if builtin is None:
        raise ConfigError(
            f"--builtin: {path} is a plain state dict; name its architecture with --builtin"
        )
    return LoadedModel(
        _builtin(
            builtin, state_tensors(blob, path), path, data, dataset_name, num_classes, normalization
        )
        .to(device)
        .eval(),
        {**info, "source": "builtin + state dict", "builtin": builtin},
    )


def _builtin(
    name: str,
    state: dict[str, torch.Tensor],
    where: Path,
    data: ImageDataset | None,
    dataset_name: str | None,
    num_classes: int | None,
    normalization: str | None,
) -> nn.Module:
    from featavg.models.builtin import MAX_CLASSES, build_model, default_normalization
    from featavg.models.image_classifier import load_backbone_state, normalization_by_name
    from featavg.models.model_file import head_classes

    if data is None or dataset_name is None:
        raise ConfigError("--data: needed to size a builtin model")
    if num_classes is None:
        num_classes = head_classes(state, where)
        if num_classes is None:
            raise ConfigError("--num-classes: needed (the state dict has no fc.weight)")
    elif not 1 <= num_classes <= MAX_CLASSES:
        raise ConfigError(f"--num-classes: must be in 1..{MAX_CLASSES}, got {num_classes}")
    _, channels, size, _ = data.train.x.shape
    norm = (
        normalization_by_name(normalization)
        if normalization is not None
        else default_normalization(name, dataset_name)
    )
    model = build_model(name, num_classes, int(channels), int(size), norm)
    load_backbone_state(model, state)
    return model


def check_model_fits(
    model: nn.Module, x_example: torch.Tensor, num_classes: int, num_groups: int | None = None
) -> None:
    """Run ``model`` once, in eval mode, on ``x_example`` (a few inputs as the probe feeds
    them: uint8 pixels become float / 255) with gradients on, and check that it returns
    what the probe needs: one tensor (N, O) of finite floating logits, O = ``num_classes``
    (fine), ``num_groups`` (coarse) or 1 (a margin, two groups), that depends on the input
    through autograd. ConfigError (one line, exit code 2): what the model did and what the
    probe expects; non-finite logits (NaN or inf weights, an overflow) are a
    :class:`~featavg.faults.NumericalFault` (exit code 3), as on the probe's later batches.
    Cheap: called before the probe's passes over the data."""
    _check_materialised(model, "model: has")
    if x_example.shape[0] == 0:  # no points: the probe itself refuses empty data
        return
    first = next(iter([*model.parameters(), *model.buffers()]), None)
    device = first.device if first is not None else torch.device("cpu")
    x = x_example.to(device)
    x = (x.float() / 255.0 if x.dtype == torch.uint8 else x).detach().requires_grad_(True)
    allowed, outputs = {num_classes}, [f"{num_classes} classes"]
    if num_groups is not None and num_groups != num_classes:
        allowed.add(num_groups)
        outputs.insert(0, f"{num_groups} groups")
    if num_groups == 2:
        allowed.add(1)
        outputs.append("1 (a margin)")
    expects = (
        f"the probe feeds {str(x.dtype).removeprefix('torch.')} images {tuple(x.shape)} in "
        f"[0, 1] and expects one logits tensor (N, O), O = {', '.join(outputs)}"
    )
    try:
        with eval_mode(model), torch.enable_grad():
            out = model(x)
    except (Exception, SystemExit) as err:  # the user's forward failing is bad input
        raise ConfigError(f"{user_code_error('model: its forward pass', err)}; {expects}") from None
    if not isinstance(out, torch.Tensor):
        raise ConfigError(f"model: returns a {type(out).__name__}, not a tensor; {expects}")
    n = x.shape[0]
    if out.dim() != 2 or out.shape[0] != n:
        raise ConfigError(f"model: returns shape {tuple(out.shape)} for {n} inputs; {expects}")
    if out.shape[1] not in allowed:
        raise ConfigError(f"model: returns {out.shape[1]} logits; {expects}")
    if not out.is_floating_point():
        raise ConfigError(f"model: returns {out.dtype} values, not floating logits; {expects}")
    if not out.requires_grad:
        raise ConfigError(
            "model: its output does not depend on the input through autograd (detached, or "
            "computed without gradients); the probe differentiates the logits with respect "
            "to the layer and the input"
        )
    if not bool(torch.isfinite(out.detach()).all()):
        raise NumericalFault(
            "model: returns non-finite logits (NaN/inf) on inputs in [0, 1] (NaN or inf "
            "weights, or an overflow): a numerical fault, nothing measured"
        )
