"""Model: a wrapped ``nn.Module`` that explainer can run safely.

The wrapper owns three things every method needs and no method should redo:

* a context (:meth:`Model.evaluating`) that puts the network in eval mode, freezes the
  parameters' ``requires_grad`` (we only ever differentiate with respect to inputs, so
  parameter ``.grad`` is never touched), turns off ``inplace`` activations (they break
  backward hooks and DeepLIFT), and restores all of it afterwards — also when an error
  is raised;
* target resolution (int, one per sample, class name or ``"predicted"``);
* what the network's output is: where the explained tensor is in what forward returns
  (``select``, :mod:`explainer.outputs`), the task (classification, regression,
  multilabel) and the conversion from that tensor to scores (``to_scores``).

A plain callable (``clf.predict_proba``) is wrapped as a :class:`~explainer.black_box.CallableNet`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from ._checks import all_finite, check_bool, check_names
from .black_box import CallableNet, callable_fingerprint
from .errors import ExplainerError, InputError, ModelError, describe
from .evaluating import Evaluating, call_facts
from .fingerprint import fingerprint
from .inputs import ForwardArgs, InputLayout
from .outputs import as_columns, as_selector, describe_select
from .text import Tokenizer

__all__ = ["Model", "wrap"]

_MODALITIES = ("image", "tabular", "text")
_OUTPUTS = ("logits", "probabilities")
TASKS = ("classification", "regression", "multilabel")


class Model:
    """A network plus what explainer needs to know about it.

    Create it with :func:`wrap`. Attributes are read-only by convention; ``wrap`` returns a
    new ``Model`` when asked to change them.

    Attributes:
        net: the wrapped ``torch.nn.Module`` (not copied); a plain callable is held in a
            :class:`~explainer.black_box.CallableNet`.
        class_names: one name per output column, or None.
        modality: "image" or "tabular".
        output: "logits" or "probabilities": what the selected tensor holds.
        select: where that tensor is in what forward returns ("auto", a key or attribute
            name, an int index, or a function; see :func:`wrap`).
        input: "tensor" (modules) or "numpy" (a black-box function fed numpy arrays).
        channels_first: True when image inputs are stated to be (N, C, H, W) as given.
        tokenizer: a text model's tokenizer (:class:`~explainer.text.Tokenizer`), or None.
        embedding: a text model's embedding layer, as given (None: found automatically).
        reference_token: the token that stands for an absent one in a text model.
        name: the display name used in reports.

    Raises:
        InputError: ``net`` is neither a Module nor callable, an unknown ``modality``,
            ``output``, ``task``, ``select`` or ``input``, or class names that are not
            unique strings.

    Example:
        >>> import torch, explainer as ex
        >>> m = ex.wrap(torch.nn.Linear(3, 2), modality="tabular", class_names=["no", "yes"])
        >>> m
        Model(Linear, modality='tabular', output='logits', classes=2, params=8)
        >>> m.predict(torch.zeros(4, 3)).shape  # class probabilities, eval mode restored after
        torch.Size([4, 2])
        >>> m.class_index("yes"), m.task
        (1, 'classification')
    """

    def __init__(
        self,
        net: nn.Module | Callable[..., Any],
        class_names: Sequence[str] | Mapping[int, str] | None = None,
        modality: str = "image",
        output: str = "logits",
        name: str | None = None,
        *,
        task: str | None = None,
        select: Any = "auto",
        input: str | None = None,
        channels_first: bool = False,
        tokenizer: Any = None,
        embedding: Any = None,
        reference_token: Any = "pad",
    ) -> None:
        net = _as_network(net, input)
        _check_kinds(modality, output, task)
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
        self.name = name or _display_name(net)
        self.select = select
        self.input = "numpy" if isinstance(net, CallableNet) and net.fed_numpy else "tensor"
        self._task = task
        self._selector = as_selector(select)
        # What the last forward found (how the tensor was selected, its columns): the
        # manifest records it; an inferred task is read from the columns. Shared with the
        # copies of :meth:`with_network` and :meth:`calling` (the same network's outputs).
        self._seen: dict[str, Any] = {
            "selected": describe_select(select),
            "columns": len(class_names) if class_names else None,
        }
        # True: image inputs are (N, C, H, W) as given, the channels-last guess is skipped
        self.channels_first = check_bool(channels_first, "channels_first")
        # Text models (modality="text"): see explainer.text
        self.tokenizer = None if tokenizer is None else Tokenizer(tokenizer)
        self.embedding = embedding
        self.reference_token = reference_token
        # What a call adds to the network's inputs (see explainer.inputs and :meth:`calling`):
        # several inputs packed into one row, and forward arguments.
        self.layout: InputLayout | None = None
        self.forward_args = ForwardArgs()

    def __repr__(self) -> str:
        classes = len(self.class_names) if self.class_names else "?"
        task = "" if self.task == "classification" else f", task={self.task!r}"
        return (
            f"Model({self.name}, modality={self.modality!r}, output={self.output!r}{task}, "
            f"classes={classes}, params={self.n_parameters:,})"
        )

    def with_network(self, net: nn.Module) -> Model:
        """The same wrapping (names, modality, output, task, select) around ``net``, e.g.
        a randomized copy of the network."""
        copy = Model(
            net,
            self.class_names,
            self.modality,
            self.output,
            self.name,
            task=self._task,
            select=self.select,
            channels_first=self.channels_first,
            embedding=self.embedding,
            reference_token=self.reference_token,
        )
        copy.tokenizer = self.tokenizer
        copy._seen = self._seen
        copy.layout, copy.forward_args = self.layout, self.forward_args
        return copy

    def rows(self, part: slice) -> Model:
        """The model of the samples in ``part`` of a batch explained in one call: itself,
        or, when a forward argument holds a row per sample, a model holding those rows (a
        chunk of the batch, or its first row for a pass that measures costs)."""
        if not self.forward_args.per_sample:
            return self
        return self.calling(self.layout, self.forward_args.rows(part))

    def calling(
        self, layout: InputLayout | None = None, forward_args: ForwardArgs | None = None
    ) -> Model:
        """The same model (the same network, not copied) called on packed rows of several
        inputs (``layout``) and with ``forward_args``; see :mod:`explainer.inputs`.

        Methods see one tensor of rows either way: a model with a layout is tabular to
        them, (N, D) rows, and :meth:`forward` unpacks each row into the network's inputs.
        """
        copy = self.with_network(self.net)
        copy.layout = layout
        copy.forward_args = forward_args if forward_args is not None else ForwardArgs()
        if layout is not None:
            copy.modality = "tabular"
        return copy

    # -- facts about the network -------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self._facts()[0]

    def _facts(self) -> tuple[torch.device, torch.dtype, int]:
        """The network's (device, dtype, parameter count): held during ``evaluating()``,
        else found now."""
        return call_facts(self.net)

    @property
    def dtype(self) -> torch.dtype:
        """The floating-point dtype inputs are run in: that of the first floating parameter
        (or buffer), float32 when the network has none."""
        return self._facts()[1]

    @property
    def n_parameters(self) -> int:
        return self._facts()[2]

    @property
    def task(self) -> str:
        """The task, "classification", "regression" or "multilabel": the one given to
        :func:`wrap`, else inferred from the output columns (class names, or the last
        forward): one column is a regression (never a one-class softmax), more a
        classification."""
        if self._task is not None:
            return self._task
        return "regression" if self._seen["columns"] == 1 else "classification"

    @property
    def task_given(self) -> bool:
        """Whether the task was given to :func:`wrap` (else it is inferred)."""
        return self._task is not None

    @property
    def selected(self) -> str:
        """How the explained tensor is taken from the forward's result, in words
        ("attribute .logits (automatic)"); "automatic" for a tensor returned as it is, or
        before the model has run."""
        return self._seen["selected"]

    @property
    def differentiable(self) -> bool:
        """Whether gradients can reach the inputs: False for a function fed numpy (a black
        box), which only methods registered with ``needs_gradients=False`` explain."""
        return self.input != "numpy"

    @property
    def input_channels(self) -> int | None:
        """Channels the first convolution expects, when the network starts with one."""
        for m in self.net.modules():
            if isinstance(m, nn.Conv2d | nn.Conv1d | nn.Conv3d):
                return m.in_channels
        return None

    def fingerprint(self) -> str:
        """SHA-256 (first 16 hex digits) of the parameters and buffers, in order, computed
        once per model state (see :func:`explainer.fingerprint.fingerprint`, which says
        what its cheap check of the state sees and misses); for a plain callable, of the
        pickled function (its name and id when it cannot be pickled: see
        :func:`~explainer.black_box.callable_fingerprint`)."""
        if isinstance(self.net, CallableNet):
            return callable_fingerprint(self.net)
        return fingerprint(self.net)

    # -- running it ---------------------------------------------------------------------
    def evaluating(self) -> Evaluating:
        """Eval mode, frozen parameters and no in-place activations; all restored on exit.

        In-place flags are turned off on eager modules only: a TorchScript module holds
        them as constants, which cannot be set, and keeps them.

        Example:
            >>> import torch, explainer as ex
            >>> net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Dropout())
            >>> with ex.wrap(net, modality="tabular").evaluating():
            ...     print(net.training, net[0].weight.requires_grad)
            False False
            >>> net.training, net[0].weight.requires_grad
            (True, True)

        Nested calls on the same network (``ex.explain`` inside, a method inside that) only
        count: the outermost one sets and restores the flags, once per call.
        """
        return Evaluating(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the network, select the explained tensor from its result (``select``) and
        check it is finite and (batch, columns); a (batch,) vector is one column, numpy
        outputs become tensors of the model's dtype.

        Call inside ``evaluating``. Any exception the network raises (other than our own)
        becomes a :class:`ModelError` chained to it.
        """
        try:
            out = self.call_network(x)
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
        return self.columns(out, x)

    def columns(self, out: Any, x: torch.Tensor) -> torch.Tensor:
        """The explained (batch, columns) tensor of the network's raw result ``out`` on the
        rows ``x``, selected and checked as :meth:`forward` does (a method that calls the
        network itself, asking for more than the outputs, records them through this)."""
        out, selected = self._selector(out)
        out = as_columns(out, x.shape[0], self.dtype, x.device)
        if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != x.shape[0]:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ModelError(
                describe(
                    f"Model output ({selected})",
                    f"a tensor of shape (batch={x.shape[0]}, classes) or (batch,)",
                    f"{got}",
                    "Wrap the network so it returns one row of class scores per sample "
                    "(e.g. flatten the head), or tell ex.wrap where they are: select='key', "
                    "select=0 or select=lambda out: ...",
                )
            )
        if self._task == "classification" and out.shape[1] == 1:
            raise ModelError(
                describe(
                    "Model output",
                    "two or more class columns for task='classification' (a softmax)",
                    "one column, whose softmax is always 1",
                    'Pass task="regression" to explain the value, or task="multilabel" '
                    "for a sigmoid probability.",
                )
            )
        self._seen.update(selected=selected, columns=out.shape[1])
        if self.class_names is not None and out.shape[1] != len(self.class_names):
            raise ModelError(
                describe(
                    "Model output",
                    f"{len(self.class_names)} classes (one per class name)",
                    f"{out.shape[1]}",
                    "Pass class_names with one entry per output column.",
                )
            )
        if not all_finite(out.detach()):
            bad = ~torch.isfinite(out.detach())
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

    def call_network(self, x: torch.Tensor) -> Any:
        """The network's raw result on rows ``x`` (before ``select``): unpacked into several
        inputs when there is a layout, with the forward arguments (a per-sample one
        expanded to the rows). :meth:`forward` checks and selects from it."""
        if self.layout is None and not self.forward_args:
            return self.net(x)
        args, kwargs = self.forward_args.call_values(len(x))
        if self.layout is None:
            return self.net(x, *args, **kwargs)
        parts = self.layout.unpack(x)
        if self.layout.keyword:
            return self.net(*args, **dict(zip(self.layout.names, parts, strict=True)), **kwargs)
        return self.net(*parts, *args, **kwargs)

    def to_scores(self, out: torch.Tensor) -> torch.Tensor:
        """Network output -> scores: class probabilities (a softmax of logits), independent
        label probabilities (multilabel: a sigmoid per column), or the predicted values
        themselves (regression).

        Example:
            >>> import torch, explainer as ex
            >>> out = torch.tensor([[0.0, 0.0]])
            >>> for task in ("classification", "multilabel", "regression"):
            ...     print(task, ex.wrap(torch.nn.Identity(), task=task).to_scores(out).tolist())
            classification [[0.5, 0.5]]
            multilabel [[0.5, 0.5]]
            regression [[0.0, 0.0]]
        """
        if self.task == "regression" or self.output == "probabilities":
            return out
        return out.sigmoid() if self.task == "multilabel" else out.softmax(dim=1)

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Scores (N, columns) for validated inputs (see :meth:`to_scores`)."""
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
    net: nn.Module | Model | Callable[..., Any],
    class_names: Sequence[str] | Mapping[int, str] | None = None,
    modality: str | None = None,
    output: str | None = None,
    name: str | None = None,
    *,
    task: str | None = None,
    select: Any = None,
    input: str | None = None,
    channels_first: bool | None = None,
    tokenizer: Any = None,
    embedding: Any = None,
    reference_token: Any = None,
) -> Model:
    """Wrap a network, or any function of a batch, for explanation (idempotent).

    Two questions about the output are kept apart, so ``output`` means what it always
    did: *where* the explained tensor is in what forward returns (``select``), and *what*
    it holds (``output``, ``task``).

    Args:
        net: a ``torch.nn.Module``, a ``Model``, or a plain callable on a batch (a
            black box such as scikit-learn's ``clf.predict_proba``, or any function
            returning (N, classes) or (N,) arrays or tensors).
        class_names: one name per output column (optional): a list, or a mapping
            ``{index: name}`` with integer keys 0..K-1. A bare string is refused.
        modality: ``"image"`` for (N, C, H, W) inputs or ``"tabular"`` for (N, features).
        output: ``"logits"`` (default) or ``"probabilities"`` if the network ends in softmax
            (or sigmoid, for multilabel). Default ``"probabilities"`` for a callable named
            ``predict_proba``.
        name: a display name for reports (default: the network's class name, or the
            function's qualified name).
        task: ``"classification"`` (softmax over the columns), ``"regression"`` (the
            outputs are the predicted values; ``target`` picks a column, default 0) or
            ``"multilabel"`` (an independent sigmoid per column). None (default): inferred
            from the columns, one column being a regression (a one-class softmax is
            always 1, so it is never assumed; ``task="classification"`` on one column is
            refused).
        select: where the explained tensor is in what forward returns. ``"auto"``
            (default): a tensor as it is, else the ``.logits`` of a HuggingFace
            ``ModelOutput`` (or any object with one), the ``"logits"`` entry of a dict,
            the first element of a tuple or list. A string: that key (dicts) or attribute;
            an int: that element of a tuple; a function: ``output -> tensor``. What was
            taken is recorded in the manifest ("attribute .logits (automatic)").
        input: for a plain callable, ``"numpy"`` (default: it is fed numpy arrays and its
            outputs become float tensors; a black box, explained by methods that need
            only forward passes, e.g. ``kernel_shap``) or ``"tensor"`` (it is fed tensors;
            gradient methods work when it is differentiable). A bound method of an
            ``nn.Module`` is fed tensors and keeps the module's weights, eval mode and
            fingerprint. Modules always take tensors.
        tokenizer: for ``modality="text"``: a HuggingFace tokenizer (duck-typed) or a
            callable ``text -> list of ids``; with it, ``ex.explain`` takes strings.
        embedding: for ``modality="text"``: the input embedding layer (a dotted name or a
            module); None finds it (``get_input_embeddings()``, else the first
            ``nn.Embedding``). Text methods explain the model through its output.
        reference_token: for ``modality="text"``: the token an absent token becomes
            ("pad", the default; "mask", "unk" or an id); special tokens and padding are
            kept in every reference. See :mod:`explainer.text`.
        channels_first: True states that image inputs are channels-first (N, C, H, W) as
            given: the check that refuses batches looking channels-last, such as
            (4, 2, 1, 1) for a network without convolutions, is skipped. Default False.

    Returns:
        A :class:`Model`. Wrapping a ``Model`` again returns it unchanged unless an argument
        asks for a change, in which case a new ``Model`` around the same network is returned.

    Raises:
        InputError: a bad argument (see :class:`Model`).

    Example:
        >>> import numpy as np, torch, explainer as ex
        >>> m = ex.wrap(torch.nn.Linear(4, 2), modality="tabular", class_names=["a", "b"])
        >>> ex.wrap(m) is m
        True
        >>> bb = ex.wrap(lambda a: np.tanh(a).sum(1), modality="tabular")  # (N,) numpy
        >>> bb.predict(torch.ones(2, 4)).shape, bb.task, bb.differentiable
        (torch.Size([2, 1]), 'regression', False)
    """
    if isinstance(net, Model):
        given = (
            class_names, modality, output, name, task, select, input, channels_first,
            tokenizer, embedding, reference_token,
        )  # fmt: skip
        if all(v is None for v in given):
            return net
        return Model(
            _as_network(net.net, input),
            class_names if class_names is not None else net.class_names,
            modality or net.modality,
            output or net.output,
            name or net.name,
            task=task or net._task,
            select=net.select if select is None else select,
            channels_first=net.channels_first if channels_first is None else channels_first,
            tokenizer=tokenizer
            if tokenizer is not None
            else getattr(net.tokenizer, "source", None),
            embedding=embedding if embedding is not None else net.embedding,
            reference_token=reference_token if reference_token is not None else net.reference_token,
        )
    return Model(
        net,
        class_names,
        modality or "image",
        output or _default_output(net),
        name,
        task=task,
        select="auto" if select is None else select,
        input=input,
        channels_first=False if channels_first is None else channels_first,
        tokenizer=tokenizer,
        embedding=embedding,
        reference_token="pad" if reference_token is None else reference_token,
    )


def _as_network(net: Any, input: str | None) -> nn.Module:
    """``net`` as a module: a Module as it is, a callable in a :class:`CallableNet`."""
    if isinstance(net, CallableNet):  # a Model wrapped again
        return net if input in (None, net.input) else CallableNet(net.fn, input)
    if isinstance(net, nn.Module):
        if input not in (None, "tensor"):
            raise InputError(
                describe(
                    "`input`",
                    '"tensor" (or None) for a torch.nn.Module',
                    repr(input),
                    "Modules take tensors: leave input out, or wrap a function of numpy "
                    'arrays with input="numpy".',
                )
            )
        return net
    if callable(net):
        owner = getattr(net, "__self__", None)
        default = "tensor" if isinstance(owner, nn.Module) else "numpy"
        return CallableNet(net, input or default)
    raise InputError(
        describe(
            "`net`",
            "a torch.nn.Module or a callable on a batch",
            type(net).__name__,
            "Pass the network itself, e.g. ex.wrap(my_cnn), or a function such as "
            "ex.wrap(clf.predict_proba, modality='tabular').",
        )
    )


def _check_kinds(modality: str, output: str, task: str | None) -> None:
    """``modality``, ``output`` and ``task`` are among the accepted values."""
    for arg, value, choices, fix in (
        ("modality", modality, _MODALITIES,
         'Use modality="image" for (N, C, H, W) inputs, "tabular" for (N, features) or '
         '"text" for token ids.'),
        ("output", output, _OUTPUTS,
         'Use output="probabilities" when the network ends in a softmax.'),
        ("task", task, (*TASKS, None),
         'Use task="regression" for predicted values, "multilabel" for independent '
         'labels, or leave it out (inferred).'),
    ):  # fmt: skip
        if value not in choices:
            raise InputError(describe(f"`{arg}`", f"one of {choices}", repr(value), fix))


def _default_output(net: Any) -> str:
    """The default ``output``: "probabilities" for a callable named ``predict_proba``
    (scikit-learn's), else "logits"."""
    return "probabilities" if getattr(net, "__name__", "") == "predict_proba" else "logits"


def _display_name(net: nn.Module) -> str:
    """The class name of a module; the qualified name of a wrapped function."""
    if isinstance(net, CallableNet):
        return getattr(net.fn, "__qualname__", type(net.fn).__name__)
    return type(net).__name__
