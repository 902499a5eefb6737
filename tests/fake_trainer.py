"""Stands in for ``python -m rasa_server train`` in the retraining tests: prints what Rasa's
training prints (the component lines, tqdm's carriage-return epoch bars) and writes
``{--out}/{--fixed-model-name}.tar.gz`` holding its own arguments.

``--mode``: ``ok``; ``fail`` (exit 1 with an error, no model); ``hang`` (keeps training
until it is killed; its PID in ``--pid-file``); ``nomodel`` (exit 0, writes nothing).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def bar(epoch: int, of: int) -> str:
    done = int(10 * epoch / of)
    return f"\rEpochs: {100 * epoch // of:3d}%|{'█' * done}{' ' * (10 - done)}| {epoch}/{of} [00:01<00:01, 9.9it/s, t_loss=1.2, i_acc=0.9]"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--fixed-model-name", required=True)
    parser.add_argument("--mode", default="ok")
    parser.add_argument("--pid-file")
    args, rest = parser.parse_known_args()
    if args.pid_file:
        import os

        Path(args.pid_file).write_text(str(os.getpid()), encoding="utf-8")
    print("2026-12-03 10:00:00 INFO     rasa.engine.training.hooks  - Starting to train component 'OneBatchDIETClassifier'.", flush=True)
    for epoch in range(1, 46):
        sys.stderr.write(bar(epoch, 45))
        sys.stderr.flush()
        if args.mode == "hang" and epoch == 15:
            while True:
                time.sleep(0.5)
    sys.stderr.write("\n")
    print("2026-12-03 10:00:01 INFO     rasa.engine.training.hooks  - Finished training component 'OneBatchDIETClassifier'.", flush=True)
    print(
        "2026-12-03 10:00:01 INFO     rasa.engine.training.hooks  - Starting to train component 'IntentGatedResponseSelector'.", flush=True
    )
    for epoch in range(1, 61):
        sys.stderr.write(bar(epoch, 60))
    sys.stderr.write("\n")
    if args.mode == "fail":
        print("rasa.shared.exceptions.InvalidConfigException: the pipeline is broken", file=sys.stderr, flush=True)
        return 1
    if args.mode == "nomodel":
        return 0
    model = Path(args.out) / f"{args.fixed_model_name}.tar.gz"
    model.write_text(json.dumps({"trained": args.fixed_model_name, "args": rest}), encoding="utf-8")
    print(f"Your Rasa model is trained and saved at '{model}'.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
