"""``nnkernels predict MODEL INPUT.npy``: class predictions of a saved model.

INPUT.npy holds one sample per row, (n, features), or images (n, height, width)
whose pixels are flattened; a single sample may be given as (features,).
Floating-point input is used as is (the datasets scale features to [0, 1]);
uint8 input (raw images) is divided by 255 first.

Prints one line per sample: the predicted class index and, when the model file
records them, the class name. ``--output OUT.npy`` saves the class indices
instead (``--probabilities``: the softmax probabilities, (n, classes)).
"""

from __future__ import annotations

import numpy as np

from ..cli import UsageError
from ._common import add_runtime_arguments, exit_quietly_on_broken_pipe, load_model, one_line_errors


def add_arguments(parser) -> None:
    one_line_errors(parser)
    parser.add_argument("model", metavar="MODEL", help="a model file written by nnkernels train --save")
    parser.add_argument("input", metavar="INPUT.npy", help="samples to classify (.npy)")
    parser.add_argument("--output", metavar="OUT.npy", help="save predictions to a .npy file")
    parser.add_argument("--probabilities", action="store_true",
                        help="predict class probabilities (softmax) instead of class indices")
    parser.add_argument("--batch-size", type=int, default=1024, metavar="N",
                        help="batch size (default 1024)")
    add_runtime_arguments(parser)


def _load_input(path: str, n_features: int) -> np.ndarray:
    try:
        X = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except (ValueError, OSError, EOFError):
        raise UsageError(f"{path}: not a .npy file of numbers (np.save format, no pickled "
                         "objects)") from None
    if not isinstance(X, np.ndarray):
        raise UsageError(f"{path}: expected a .npy array, got an archive of several arrays")
    if X.dtype.kind not in "fiub":
        raise UsageError(f"{path}: expected numbers, got dtype {X.dtype}")
    if X.ndim == 1:
        X = X[None, :]
    if X.ndim < 2 or int(np.prod(X.shape[1:])) != n_features:
        raise UsageError(f"{path}: shape {X.shape} does not fit the model, which takes "
                         f"{n_features} features per sample: expected (n, {n_features}) or "
                         f"images whose pixels multiply to {n_features}")
    scale = 1.0 / 255.0 if X.dtype == np.uint8 else 1.0
    X = X.reshape(X.shape[0], n_features).astype(np.float32) * np.float32(scale)
    if not np.isfinite(X).all():
        raise UsageError(f"{path}: contains NaN or infinite values")
    return np.ascontiguousarray(X)


def run(args) -> int:
    from ._common import setup_runtime

    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {args.batch_size}")
    setup_runtime(args)
    model, meta = load_model(args.model)
    sizes = getattr(model, "sizes", None)
    if sizes is None:
        raise UsageError(f"{args.model}: not an MLP saved by nnkernels train")
    X = _load_input(args.input, sizes[0])
    from ..train import predict

    logits = predict(model, X, batch_size=args.batch_size).astype(np.float64)
    if args.probabilities:
        z = logits - logits.max(axis=1, keepdims=True)
        result = np.exp(z)
        result /= result.sum(axis=1, keepdims=True)
    else:
        result = logits.argmax(axis=1)
    classes = meta.get("classes")
    with exit_quietly_on_broken_pipe():
        if args.output:
            try:
                np.save(args.output, result)
            except OSError as exc:
                raise UsageError(f"--output: cannot write {args.output}: {exc}") from None
            print(f"wrote {args.output}: {'probabilities' if args.probabilities else 'classes'} "
                  f"of {len(X)} samples, shape {result.shape}")
        elif args.probabilities:
            for row in result:
                print(" ".join(f"{p:.4f}" for p in row))
        else:
            for c in result:
                print(f"{c}\t{classes[c]}" if classes and classes[c] != str(c) else f"{c}")
    return 0
