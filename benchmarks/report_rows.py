"""The loop that the long benchmarks share: run the jobs one after another,
rewrite `NAME.json` after each (a run that stops early keeps the rows it
finished), then write `NAME.md` and print the table."""

import os
import time


def run_jobs(jobs, name, args, markdown):
    """Runs `jobs` (callables, each returning a row dict or a list of them) and writes
    `args.out/NAME.json` (benchmark name, `vars(args)`, environment, rows, wall
    seconds) after each, then `args.out/NAME.md` = `markdown(rows, args)`.
    Returns the rows."""
    from ldseg_tf.environment import environment_info
    from ldseg_tf.utils import atomic_write_text, write_json

    os.makedirs(args.out, exist_ok=True)
    rows, start, environment = [], time.time(), environment_info(args.seed)
    for job in jobs:
        out = job()
        rows.extend(out if isinstance(out, list) else [out])
        write_json(os.path.join(args.out, f"{name}.json"),
                   {"benchmark": name, "args": vars(args), "environment": environment,
                    "rows": rows, "wall_seconds": round(time.time() - start, 1)})
    table = markdown(rows, args)
    atomic_write_text(os.path.join(args.out, f"{name}.md"), table)
    print("\n" + table)
    return rows
