"""`ldseg demo`: train on synthetic glands, sample, write figures and metrics."""

import os
import time


def register(subparsers):
    p = subparsers.add_parser("demo",
                              help="train on synthetic images, sample, write figures and metrics")
    p.add_argument("--out", default="ldseg_demo", help="output directory")
    p.add_argument("--minutes", type=float, default=3.0, help="training time budget")
    p.add_argument("--max-epochs", type=int, default=200)
    p.add_argument("--size", type=int, default=64, help="image side (a multiple of 4)")
    p.add_argument("--train-examples", type=int, default=256)
    p.add_argument("--test-examples", type=int, default=32)
    p.add_argument("--samples", type=int, default=10, help="samples for the uncertainty map")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)
    return p


def _figures(model, test_ds, out, args):
    """The overlay and uncertainty figures of the first test batch; their paths."""
    import numpy as np

    from ldseg_tf.evaluation import predict_dataset
    from ldseg_tf.visualize import save_overlay_figure, save_uncertainty_figure

    images, truths, outputs = predict_dataset(model, test_ds.take(1), steps=2, samples=1,
                                              seed=args.seed, progress=False)
    n = min(4, len(images))
    overlay = save_overlay_figure(os.path.join(out, "overlay.png"), images[:n], truths[:n],
                                  outputs["labels"][:n], titles=["LDSeg, 2 DDIM steps"] * n)
    seg = model.segment(np.stack(images[:n]), steps=2, samples=args.samples, seed=args.seed,
                        eta=1.0)
    uncertainty = save_uncertainty_figure(os.path.join(out, "uncertainty.png"), images[:n],
                                          seg["labels"], seg["std"], args.samples)
    return overlay, uncertainty


def run(args):
    from ldseg_tf.config import LDSegConfig
    from ldseg_tf.data import make_dataset
    from ldseg_tf.evaluation import evaluate_model, mean_foreground, write_report
    from ldseg_tf.metrics import format_summary
    from ldseg_tf.training import load_state, train

    out = args.out
    run_dir = os.path.join(out, "run")
    config = LDSegConfig.preset("small", image_shape=(args.size, args.size, 3),
                                downsamplings=2, seed=args.seed)
    print(f"LDSeg demo: synthetic gland images {args.size}x{args.size}, training for at most "
          f"{args.minutes:g} min on {os.cpu_count()} CPU core(s); output in {out}")
    train_ds = make_dataset("synthetic:glands", config, "train", batch_size=8, seed=args.seed,
                            num_examples=args.train_examples, augment=False)
    test_ds = make_dataset("synthetic:glands", config, "test", batch_size=8, shuffle=False,
                           seed=args.seed, num_examples=args.test_examples)
    start = time.time()
    model = train(config, train_ds, run_dir, epochs=args.max_epochs, resume=True,
                  time_limit=args.minutes * 60, verbose=2)
    train_seconds = time.time() - start
    result = evaluate_model(model, test_ds, steps=2, samples=1, seed=args.seed)
    print(format_summary(result["summary"]))
    dsc = mean_foreground(result["summary"], "dsc")
    iou = mean_foreground(result["summary"], "iou")
    print(f"held-out synthetic images, 2 DDIM steps: DSC {dsc:.3f}  IoU {iou:.3f}")
    figures = _figures(model, test_ds, out, args)
    metrics_path = write_report(
        result, os.path.join(out, "metrics.json"),
        {"dsc": dsc, "iou": iou, "train_seconds": train_seconds,
         "epochs": load_state(run_dir)["epoch"], "steps": int(model.optimizer.iterations),
         "config": config.to_dict()})
    for path in (*figures, metrics_path):
        print(f"wrote {path}")
