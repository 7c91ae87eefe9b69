"""``nnkernels evaluate MODEL``: test accuracy, loss and confusion matrix of a saved model.

    nnkernels train --save digits.nnk
    nnkernels evaluate digits.nnk                      # on the digits test split
    nnkernels evaluate fm.nnk --dataset fashion-mnist
"""

from __future__ import annotations

import sys

from ..cli import UsageError
from ._common import (add_dataset_arguments, add_runtime_arguments, confusion_matrix,
                      exit_quietly_on_broken_pipe, format_confusion_matrix, load_dataset,
                      load_model, one_line_errors)


def add_arguments(parser) -> None:
    one_line_errors(parser)
    parser.add_argument("model", metavar="MODEL", help="a model file written by nnkernels train --save")
    add_dataset_arguments(parser)
    parser.add_argument("--split", choices=("test", "train"), default="test",
                        help="which split to evaluate on (default test)")
    parser.add_argument("--batch-size", type=int, default=1024, metavar="N",
                        help="evaluation batch size (default 1024)")
    add_runtime_arguments(parser)


def run(args) -> int:
    from ._common import setup_runtime

    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {args.batch_size}")
    setup_runtime(args)
    model, meta = load_model(args.model)
    ds = load_dataset(args)
    X, y = ds.test if args.split == "test" else ds.train
    sizes = getattr(model, "sizes", None)
    if sizes is not None and (sizes[0] != ds.n_features or sizes[-1] != ds.n_classes):
        raise UsageError(f"{args.model} takes {sizes[0]} features and predicts {sizes[-1]} classes; "
                         f"{ds.name} has {ds.n_features} features and {ds.n_classes} classes")
    trained_on = meta.get("dataset")
    with exit_quietly_on_broken_pipe():
        if trained_on and trained_on != ds.name:
            print(f"note: the model was trained on {trained_on}, evaluating on {ds.name}",
                  file=sys.stderr)
        from ..train import predict
        from .train import cross_entropy

        logits = predict(model, X, batch_size=args.batch_size)
        pred = logits.argmax(axis=1)
        correct = int((pred == y).sum())
        print(f"{ds.name} {args.split} split: accuracy {100 * correct / len(y):.2f}% "
              f"({correct}/{len(y)}), loss {cross_entropy(logits, y):.4f}")
        print(format_confusion_matrix(confusion_matrix(y, pred, ds.n_classes), ds.classes))
    return 0
