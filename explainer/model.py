"""Model: a wrapped ``nn.Module`` that explainer can run safely.

The wrapper owns three things every method needs and no method should redo:

* a context (:meth:`Model.evaluating`) that puts the network in eval mode, freezes the
  parameters' ``requires_grad`` (we only ever differentiate with respect to inputs, so
  parameter ``.grad`` is never touched), turns off ``inplace`` activations (they break
  backward hooks and DeepLIFT), and restores all of it afterwards — also when an error
  is raised;
* target resolution (int, one per sample, class name or ``"predicted"``);
* the conversion from network output to class probabilities (``scores``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from ._checks import check_names
from .errors import ExplainerError, InputError, ModelError, describe

__all__ = ["Model", "wrap"]

_MODALITIES = ("image", "tabular")
_OUTPUTS = ("logits", "probabilities")


class Model:
    """A network plus what explainer needs to know about it.

    Create it with :func:`wrap`. Attributes are read-only by convention; ``wrap`` returns a
    new ``Model`` when asked to change them.

    Attributes:
        net: the wrapped ``torch.nn.Module`` (not copied).
        class_names: one name per output column, or None.
        modality: "image" or "tabular".
        output: "logits" or "probabilities".
        name: the display name used in reports.

    Raises:
        InputError: ``net`` is not a Module, an unknown ``modality`` or ``output``, or
            class names that are not unique strings.

    Example:
        >>> import torch, explainer as ex
        >>> m = ex.wrap(torch.nn.Linear(3, 2), modality="tabular", class_names=["no", "yes"])
        >>> m
        Model(Linear, modality='tabular', output='logits', classes=2, params=8)
        >>> m.predict(torch.zeros(4, 3)).shape  # class probabilities, eval mode restored after
        torch.Size([4, 2])
        >>> m.class_index("yes")
        1
    """

    def __init__(
        self,
        net: nn.Module,
        class_names: Sequence[str] | Mapping[int, str] | None = None,
        modality: str = "image",
        output: str = "logits",
        name: str | None = None,
    ) -> None:
        if not isinstance(net, nn.Module):
            raise InputError(
                describe(
                    "`net`",
                    "a torch.nn.Module",
                    type(net).__name__,
                    "Pass the network itself, e.g. ex.wrap(my_cnn).",
                )
            )
        if modality not in _MODALITIES:
            raise InputError(
                describe(
                    "`modality`",
                    f"one of {_MODALITIES}",
                    repr(modality),
                    'Use modality="image" for (N, C, H, W) inputs or "tabular" for (N, features).',
                )
            )
        if output not in _OUTPUTS:
            raise InputError(
                describe(
                    "`output`",
                    f"one of {_OUTPUTS}",
                    repr(output),
                    'Use output="probabilities" when the network ends in a softmax.',
                )
            )
        class_names = check_names(class_names, "class_names")
        if class_names is not None:
            if len(set(class_names)) != len(class_names):
                raise InputError(
                    describe(
                        "`class_names`",
                        "unique names",
                        repr(class_names),
                        "Give every class a distinct name.",
                    )
                )
        self.net = net
        self.class_names: tuple[str, ...] | None = class_names
        self.modality = modality
        self.output = output
        self.name = name or type(net).__name__

    def __repr__(self) -> str:
        classes = len(self.class_names) if self.class_names else "?"
        return (
            f"Model({self.name}, modality={self.modality!r}, output={self.output!r}, "
            f"classes={classes}, params={self.n_parameters:,})"
        )

    # -- facts about the network -------------------------------------------------------
    @property
    def device(self) -> torch.device:
        for p in self.net.parameters():
            return p.device
        for b in self.net.buffers():
            return b.device
        return torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        """The floating-point dtype inputs are run in: that of the first floating parameter
        (or buffer), float32 when the network has none."""
        for t in (*self.net.parameters(), *self.net.buffers()):
            if t.is_floating_point():
                return t.dtype
        return torch.float32

    @property
    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.net.parameters())

    @property
    def input_channels(self) -> int | None:
        """Channels the first convolution expects, when the network starts with one."""
        for m in self.net.modules():
            if isinstance(m, nn.Conv2d | nn.Conv1d | nn.Conv3d):
                return m.in_channels
        return None

    def fingerprint(self) -> str:
        """SHA-256 (first 16 hex digits) of the parameters and buffers, in order."""
        h = hashlib.sha256()
        for key, t in self.net.state_dict().items():
            h.update(key.encode())
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()[:16]

    # -- running it ---------------------------------------------------------------------
    @contextmanager
    def evaluating(self) -> Iterator[Model]:
        """Eval mode, frozen parameters and no in-place activations; all restored on exit.

        Example:
            >>> import torch, explainer as ex
            >>> net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Dropout())
            >>> with ex.wrap(net, modality="tabular").evaluating():
            ...     print(net.training, net[0].weight.requires_grad)
            False False
            >>> net.training, net[0].weight.requires_grad
            (True, True)
        """
        modules = list(self.net.modules())
        training = [m.training for m in modules]
        inplace = [(m, m.inplace) for m in modules if isinstance(getattr(m, "inplace", None), bool)]
        params = list(self.net.parameters())
        requires_grad = [p.requires_grad for p in params]
        try:
            self.net.eval()
            for p in params:
                p.requires_grad_(False)
            for m, _ in inplace:
                m.inplace = False
            yield self
        finally:
            for m, flag in zip(modules, training, strict=True):
                m.training = flag
            for p, flag in zip(params, requires_grad, strict=True):
                p.requires_grad_(flag)
            for m, flag in inplace:
                m.inplace = flag

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the network and check its output is finite and (batch, classes).

        Call inside ``evaluating``. Any exception the network raises (other than our own)
        becomes a :class:`ModelError` chained to it.
        """
        try:
            out = self.net(x)
        except ExplainerError:
            raise
        except Exception as err:  # any failure of the user's code is the model's, not ours
            raise ModelError(
                describe(
                    f"The network failed on inputs of shape {tuple(x.shape)}",
                    "a forward pass that returns class scores",
                    f"{type(err).__name__}: {err}",
                    "Check that the inputs have the shape and layout the network was trained on.",
                )
            ) from err
        if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != x.shape[0]:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ModelError(
                describe(
                    "Model output",
                    f"a tensor of shape (batch={x.shape[0]}, classes)",
                    f"{got}",
                    "Wrap the network so it returns one row of class scores per sample "
                    "(e.g. flatten the head, or select the logits from a tuple/dict output).",
                )
            )
        if self.class_names is not None and out.shape[1] != len(self.class_names):
            raise ModelError(
                describe(
                    "Model output",
                    f"{len(self.class_names)} classes (one per class name)",
                    f"{out.shape[1]}",
                    "Pass class_names with one entry per output column.",
                )
            )
        bad = ~torch.isfinite(out.detach())
        if bool(bad.any()):
            raise ModelError(
                describe(
                    "Model output",
                    "finite class scores",
                    f"{int(bad.sum())} NaN/Inf value(s) in the output for a batch of shape "
                    f"{tuple(x.shape)}",
                    "The model produced non-finite outputs on the inputs or on the "
                    "references/path points the method evaluates (overflow, log(0), "
                    "division by zero); check the model on those inputs.",
                )
            )
        return out

    def to_scores(self, out: torch.Tensor) -> torch.Tensor:
        """Network output -> class probabilities."""
        return out.softmax(dim=1) if self.output == "logits" else out

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Class probabilities (N, classes) for validated inputs."""
        with self.evaluating():
            return self.to_scores(self.forward(x.to(self.device))).cpu()

    def class_index(self, label: str) -> int:
        """Index of a class name; raises InputError listing the names if unknown."""
        names = self.class_names or ()
        if label not in names:
            hint = (
                f"Known class names: {list(names)}."
                if names
                else "This model has no class names: pass class_names to ex.wrap or use an integer."
            )
            raise InputError(describe("`target`", "a known class name", repr(label), hint))
        return names.index(label)


def wrap(
    net: nn.Module | Model,
    class_names: Sequence[str] | Mapping[int, str] | None = None,
    modality: str | None = None,
    output: str | None = None,
    name: str | None = None,
) -> Model:
    """Wrap a network for explanation (idempotent).

    Args:
        net: a ``torch.nn.Module`` returning (batch, classes) scores, or a ``Model``.
        class_names: one name per output column (optional): a list, or a mapping
            ``{index: name}`` with integer keys 0..K-1. A bare string is refused.
        modality: ``"image"`` for (N, C, H, W) inputs or ``"tabular"`` for (N, features).
        output: ``"logits"`` (default) or ``"probabilities"`` if the network ends in softmax.
        name: a display name for reports (default: the network's class name).

    Returns:
        A :class:`Model`. Wrapping a ``Model`` again returns it unchanged unless an argument
        asks for a change, in which case a new ``Model`` around the same network is returned.

    Example:
        >>> import torch, explainer as ex
        >>> m = ex.wrap(torch.nn.Linear(4, 2), modality="tabular", class_names=["a", "b"])
        >>> ex.wrap(m) is m
        True
    """
    if isinstance(net, Model):
        if all(v is None for v in (class_names, modality, output, name)):
            return net
        return Model(
            net.net,
            class_names if class_names is not None else net.class_names,
            modality or net.modality,
            output or net.output,
            name or net.name,
        )
    return Model(net, class_names, modality or "image", output or "logits", name)
