"""The ``explainer`` command line (typer). Errors print one readable line, never a traceback."""

from __future__ import annotations

import functools
import importlib
import json
import sys
import warnings
import zipfile
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
import typer

from ._checks import check_device
from .dataset.evaluation import evaluate as run_evaluate
from .dataset.evaluation import model_for_store
from .dataset.images import ImageFolder
from .dataset.run import explain_dataset
from .dataset.sources import ArrayDataset
from .dataset.store import open_store
from .dataset.store_findings import findings as find_in
from .demo.run import run_demo
from .demo.shapes import make_shapes
from .errors import ExplainerError, InputError, describe
from .loading import load_model
from .model import wrap
from .model_layers import layers as model_layers
from .registry import list_methods
from .reporting.html import report as write_report

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Explain PyTorch models: attributions, heatmaps and self-contained HTML reports.",
)


def _friendly(fn):
    """Turn our errors (and missing files) into one line on stderr and exit code 2."""

    @functools.wraps(fn)
    def run(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (ExplainerError, FileNotFoundError) as err:
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(code=2) from None
        except OSError as err:  # permissions, a full disk, a read-only file system
            typer.echo(
                f"error: {err.strerror or err} ({err.filename or 'file system'}). Check the "
                "path's permissions and free space; finished batches of a store are kept.",
                err=True,
            )
            raise typer.Exit(code=2) from None

    return run


@app.command()
@_friendly
def methods() -> None:
    """List the attribution methods: name, aliases, modalities, description."""
    typer.echo(str(list_methods()))


@app.command()
@_friendly
def demo(
    out: Annotated[Path, typer.Option(help="Where to write the HTML report.")] = Path(
        "reports/demo.html"
    ),
    n_images: Annotated[int, typer.Option(min=1, max=64, help="Demo images to explain.")] = 8,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Explain the embedded demo (shipped CNN on synthetic shapes, MLP on breast cancer) and write a report."""
    path, seconds = run_demo(out=out, n_images=n_images, progress=progress)
    typer.echo(f"wrote {path} in {seconds:.1f} s")


def _value(text: str):
    """``--param`` values: JSON when it parses (numbers, true, null, lists), else a string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _method_params(methods: list[str], params: list[str]) -> dict[str, dict]:
    spec: dict[str, dict] = {m: {} for m in methods}
    for item in params:
        key, sep, value = item.partition("=")
        method, dot, name = key.rpartition(".")
        if not sep or not name or (not dot and len(spec) != 1):
            raise InputError(
                describe(
                    "--param",
                    "METHOD.NAME=VALUE (or NAME=VALUE with one method)",
                    repr(item),
                    "e.g. --param integrated_gradients.n_steps=64",
                )
            )
        method = method or next(iter(spec))
        if method not in spec:
            raise InputError(
                describe(
                    "--param",
                    f"a method given with --method {list(spec)}",
                    repr(method),
                    f"Add --method {method}, or name one of {list(spec)} before the dot.",
                )
            )
        spec[method][name] = _value(value)
    return spec


def _texts(path: Path, text_field: str, label_field: str) -> tuple[list[str], np.ndarray | None]:
    """A .txt file (one text per non-empty line) or a .jsonl file (one object per line: the
    text in ``text_field``, an integer label in ``label_field`` when every line has one)."""
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if path.suffix == ".txt":
        return lines, None
    texts, labels = [], []
    for k, line in enumerate(lines, start=1):
        try:
            row = json.loads(line)
            texts.append(str(row[text_field]))
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise InputError(
                describe(
                    f"--data line {k}",
                    f"a JSON object with the text in {text_field!r}",
                    f"{line[:60]!r} ({type(err).__name__})",
                    'Give each line as {"text": "...", "label": 0}, or set --text-field.',
                )
            ) from err
        labels.append(row.get(label_field) if isinstance(row, dict) else None)
    known = all(isinstance(v, int) and not isinstance(v, bool) for v in labels)
    return texts, np.asarray(labels, dtype=np.int64) if known and labels else None


def _data(data: str, size: int | None, mean: list[float], std: list[float], limit: int | None):
    """The --data argument -> (data, labels): an image folder, a .npy/.npz file, a .txt or
    .jsonl file of texts, or "demo"."""
    path = Path(data)
    if not path.is_dir() and (size is not None or mean or std):
        raise InputError(
            describe(
                "--size / --mean / --std",
                "an image folder as --data (they set how its files are read)",
                f"--data {data!r}",
                "Resize and normalize arrays before saving them, or drop these options.",
            )
        )
    if data == "demo" and not path.exists():
        shapes = make_shapes(limit or 64, seed=1)
        return ArrayDataset(shapes.images, shapes.labels), None
    if path.is_dir():
        return ImageFolder(path, size=size, mean=mean or None, std=std or None), None
    if path.suffix in (".npy", ".npz") and path.is_file():
        return _arrays(path)
    raise InputError(
        describe(
            "--data",
            'an image folder, a .npy/.npz file, a .txt/.jsonl file of texts, or "demo"',
            repr(data) + ("" if path.exists() else " (no such file or folder)"),
            "Check the path.",
        )
    )


def _arrays(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """A .npy or .npz file -> (inputs, labels or None), read without unpickling anything."""
    try:
        arrays = np.load(path, allow_pickle=False)
        if path.suffix == ".npz":
            key = next((k for k in ("x", "inputs", "images", "data") if k in arrays), None)
            if key is None:
                raise InputError(
                    describe(
                        "--data .npz",
                        "an array named x, inputs, images or data",
                        f"{arrays.files}",
                        "Save it with np.savez(path, x=inputs, y=labels).",
                    )
                )
            x = arrays[key]
            y = next((arrays[k] for k in ("y", "labels", "targets") if k in arrays), None)
        else:
            x, y = arrays, None
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
        raise InputError(
            describe(
                "--data",
                "a numeric array saved with np.save/np.savez (no pickled objects)",
                f"{path.name}: {type(err).__name__}: {err}",
                "Save a numeric array: np.save(path, x.astype(np.float32)).",
            )
        ) from err
    return x, y


def _target(text: str) -> str | int:
    """--target: "predicted", "label", a class index (a number) or a class name."""
    if text in ("predicted", "label"):
        return text
    return int(text) if text.lstrip("-").isdigit() else text


# The options of `explain` (and those `evaluate` shares), declared once. Their names, defaults
# and help texts are the command line's interface: change them only on purpose.
_ModelFile = Annotated[
    str,
    typer.Option(
        help='Model file: TorchScript, torch.export .pt2, or a state_dict (with --factory); "demo" for the shipped CNN.'
    ),
]
_Data = Annotated[
    str, typer.Option(help='Image folder (class subfolders), .npy/.npz array, or "demo".')
]
_StorePath = Annotated[Path, typer.Option(help="The zarr store to write (resumed if present).")]
_Methods = Annotated[
    list[str] | None,
    typer.Option(help="Attribution method, repeat for several (default: integrated_gradients)."),
]
_Params = Annotated[
    list[str] | None, typer.Option(help="Method option METHOD.NAME=VALUE (repeatable).")
]
_Factory = Annotated[
    str | None, typer.Option(help="For a state_dict: package.module:function building the net.")
]
_Mean = Annotated[
    list[float] | None, typer.Option(help="Per-channel mean to subtract (repeatable).")
]
_Std = Annotated[
    list[float] | None, typer.Option(help="Per-channel std to divide by (repeatable).")
]
_MaxModelSize = Annotated[
    str, typer.Option(help='Largest model file accepted, decompressed (e.g. "16GB").')
]
_Progress = Annotated[bool, typer.Option(help="Show a progress bar.")]
_Device = Annotated[
    str | None,
    typer.Option(help="Where the model computes: cpu (default), cuda, cuda:1 or mps."),
]


@app.command()
@_friendly
def explain(
    model: _ModelFile,
    data: _Data,
    store: _StorePath,
    method: _Methods = None,
    param: _Params = None,
    factory: _Factory = None,
    modality: Annotated[
        str | None, typer.Option(help="image or tabular (default: guessed).")
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Samples per batch and store chunk.")] = 32,
    target: Annotated[
        str, typer.Option(help='"predicted", "label" or a class index/name.')
    ] = "predicted",
    size: Annotated[int | None, typer.Option(help="Resize folder images to SIZE x SIZE.")] = None,
    mean: _Mean = None,
    std: _Std = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Demo data: number of images.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue an existing store.")] = True,
    overwrite: Annotated[bool, typer.Option(help="Delete an existing store first.")] = False,
    backend: Annotated[str, typer.Option(help="local or ray.")] = "local",
    progress: _Progress = True,
    max_model_size: _MaxModelSize = "4GiB",
    device: _Device = None,
    tokenizer: Annotated[
        str | None,
        typer.Option(help="Text models: package.module:function returning the tokenizer."),
    ] = None,
    text_field: Annotated[
        str, typer.Option(help=".jsonl data: the field holding the text.")
    ] = "text",
    label_field: Annotated[
        str, typer.Option(help=".jsonl data: the field holding the label.")
    ] = "label",
) -> None:
    """Explain a whole dataset into a resumable zarr store (rerun the same command after a
    crash: finished batches are kept). Warnings (a completeness gap above a method's
    tolerance, damaged batches recomputed) are printed on stderr, one line each. Texts
    (--data texts.txt, one per line, or texts.jsonl) need a text model: --model demo-text,
    or --modality text with --tokenizer."""
    # checked in this order, so that bad options fail before the model file is read
    spec = _method_params(method or ["integrated_gradients"], param or [])
    if Path(data).suffix in (".txt", ".jsonl") and Path(data).is_file():
        inputs, labels = _texts(Path(data), text_field, label_field)
    else:
        inputs, labels = _data(data, size, mean or [], std or [], limit)
    where = check_device(device or "cpu", "--device")
    made = _built(tokenizer) if tokenizer is not None else None
    net = load_model(
        model, factory=factory, modality=modality, max_size=max_model_size, map_location=where
    )
    if made is not None:
        net = wrap(net, modality="text", tokenizer=made)
    with warnings.catch_warnings(record=True) as caught:
        result = explain_dataset(
            net,
            inputs,
            spec,
            store,
            labels=labels,
            batch_size=batch_size,
            target=_target(target),
            resume=resume,
            overwrite=overwrite,
            backend=backend,
            progress=progress,
            source={"path": model, "factory": factory, "modality": modality},
        )
    done = f"{int(result.done.sum())}/{len(result)} samples"
    typer.echo(f"wrote {result.path}: {done}, methods {', '.join(result.methods)}")
    _print_warnings([str(w.message) for w in caught], result.warnings)


def _built(spec: str) -> object:
    """What ``package.module:function`` returns (a tokenizer), called with no arguments."""
    module_name, colon, attr = spec.partition(":")
    try:
        obj = importlib.import_module(module_name) if colon and attr else None
        for part in attr.split(".") if obj is not None else ():
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as err:
        obj = None
        problem = f"{type(err).__name__}: {err}"
    else:
        problem = "not a callable" if not callable(obj) else ""
    if obj is None or problem:
        raise InputError(
            describe(
                "--tokenizer",
                "package.module:function, a function returning the model's tokenizer",
                f"{spec!r}" + (f" ({problem})" if problem else ""),
                "Pass e.g. --tokenizer explainer.demo.text:WordTokenizer.",
            )
        )
    return obj()


_StoreModel = Annotated[
    str | None, typer.Option(help="Model file (default: the one recorded in the store).")
]
_StoreFactory = Annotated[str | None, typer.Option(help="Factory for a state_dict model.")]


def _model_of(store, model: str | None, factory: str | None, max_size: str, device: str | None):
    """The network a store command runs: ``--model`` (with ``--factory``), else the model
    file the store records, on ``--device`` (default cpu)."""
    where = check_device(device or "cpu", "--device")
    if model:
        return load_model(model, factory=factory, max_size=max_size, map_location=where)
    return model_for_store(store, map_location=where)


def _print_warnings(caught: list[str], notes: list[str]) -> None:
    """Warnings on stderr as ``warning: ...`` lines, each once: those the run issued, then
    the store's completeness warnings one per method (the run issued them as one)."""
    joined = " ".join(notes)
    for text in [*dict.fromkeys(t for t in caught if t != joined), *notes]:
        typer.echo(f"warning: {text}", err=True)


@app.command()
@_friendly
def evaluate(
    store: Annotated[Path, typer.Argument(help="A store written by `explainer explain`.")],
    sample: Annotated[
        int, typer.Option(min=1, help="Samples to score (balanced over classes).")
    ] = 64,
    metrics: Annotated[
        list[str] | None, typer.Option(help="Metric groups (repeatable); default: all that apply.")
    ] = None,
    model: _StoreModel = None,
    factory: _StoreFactory = None,
    seed: Annotated[int, typer.Option(help="Seed of every random choice.")] = 0,
    progress: _Progress = True,
    max_model_size: _MaxModelSize = "4GiB",
    device: _Device = None,
) -> None:
    """Compute trust scores on a sample of a store and save them in it (reports show them)."""
    opened = open_store(store)
    net = _model_of(opened, model, factory, max_model_size, device)
    scores = run_evaluate(
        opened, net, metrics or "default", sample=sample, seed=seed, progress=progress
    )
    for verdict in scores.verdicts():
        mark = {"pass": "pass", "fail": "FAIL", "inconclusive": "not settled", "info": "info"}[
            verdict.state
        ]
        typer.echo(f"{mark:4}  {verdict.method}: {verdict.check}: {verdict.text}")
    typer.echo(f"saved trust scores of {len(scores.rows)} values in {store}")


@app.command()
@_friendly
def findings(
    store: Annotated[Path, typer.Argument(help="A store written by `explainer explain`.")],
    sample: Annotated[
        int, typer.Option(min=1, help="Explained rows that propose candidates (balanced).")
    ] = 256,
    holdout: Annotated[
        int, typer.Option(min=1, help="Other rows of the store the effects are measured on.")
    ] = 256,
    min_support: Annotated[
        float, typer.Option(help="Share of a class's samples a pattern must dominate.")
    ] = 0.6,
    min_effect: Annotated[
        float, typer.Option(help="Smallest mean change of p(class) that is kept.")
    ] = 0.05,
    model: _StoreModel = None,
    factory: _StoreFactory = None,
    seed: Annotated[int, typer.Option(help="Seed of the row draws and bootstrap.")] = 0,
    progress: _Progress = True,
    max_model_size: _MaxModelSize = "4GiB",
    device: _Device = None,
) -> None:
    """Find what the model relies on (a watermark, an ID-like column, a recurring token) in a
    store, measure each on held-out rows, and save the result in it (reports show it)."""
    opened = open_store(store)
    net = _model_of(opened, model, factory, max_model_size, device)
    found = find_in(
        opened,
        net,
        holdout,
        sample=sample,
        min_support=min_support,
        min_effect=min_effect,
        seed=seed,
        progress=progress,
    )
    for item in found:
        typer.echo(f"found  {item.sentence}")
    if not len(found):
        typer.echo("no finding")
    typer.echo(found.checked)
    typer.echo(f"saved {len(found)} finding(s) in {store}")


@app.command()
@_friendly
def report(
    files: Annotated[
        list[Path],
        typer.Argument(help="A store (from `explainer explain`) or saved explanations (.npz)."),
    ],
    out: Annotated[Path, typer.Option(help="Where to write the HTML report.")] = Path(
        "reports/report.html"
    ),
    title: Annotated[str, typer.Option(help="Report title.")] = "explainer report",
    max_samples: Annotated[int, typer.Option(min=1, help="Samples shown (store: balanced).")] = 32,
) -> None:
    """Build one self-contained HTML report from a result store or saved explanations."""
    if len(files) == 1 and files[0].is_dir():
        items = open_store(files[0])
    else:
        items = [str(f) for f in files]
    path = write_report(items, path=out, title=title, max_samples=max_samples)
    typer.echo(f"wrote {path}")


@app.command()
@_friendly
def layers(
    model: _ModelFile,
    data: Annotated[
        str | None,
        typer.Option(
            help='An example input: image folder, .npy/.npz array or "demo" (its first sample).'
        ),
    ] = None,
    shape: Annotated[
        str | None, typer.Option(help="Or the shape of one sample, e.g. 3,224,224 (random values).")
    ] = None,
    factory: _Factory = None,
    modality: Annotated[
        str | None, typer.Option(help="image or tabular (default: guessed).")
    ] = None,
    size: Annotated[int | None, typer.Option(help="Resize folder images to SIZE x SIZE.")] = None,
    max_model_size: _MaxModelSize = "4GiB",
) -> None:
    """List the model's layers with their output shapes on an example input; marks the CAM
    candidates and (→) the layer CAM methods use by default."""
    example = _example(data, shape, size)
    net = load_model(model, factory=factory, modality=modality, max_size=max_model_size)
    typer.echo(repr(model_layers(net, example)))


def _example(data: str | None, shape: str | None, size: int | None) -> torch.Tensor:
    """One example input (1, ...) from --data (its first sample) or --shape (seeded noise)."""
    if (data is None) == (shape is None):
        raise InputError(
            describe(
                "--data / --shape",
                "exactly one of them: an example input, or the shape of one sample",
                "both" if data else "neither",
                "Pass e.g. --shape 3,224,224, or --data images/.",
            )
        )
    if shape is not None:
        try:
            dims = tuple(int(d) for d in shape.split(","))
        except ValueError:
            dims = ()
        if not dims or min(dims) < 1:
            raise InputError(
                describe(
                    "--shape",
                    "positive integers separated by commas",
                    repr(shape),
                    "Pass e.g. --shape 3,224,224.",
                )
            )
        return torch.rand((1, *dims), generator=torch.Generator().manual_seed(0))
    inputs, _ = _data(data, size, [], [], 1)
    first = inputs[0]
    first = first[0] if isinstance(first, tuple) else first
    return torch.as_tensor(np.asarray(first), dtype=torch.float32)[None]


def main() -> None:  # pragma: no cover - console entry point
    app(prog_name="explainer")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
