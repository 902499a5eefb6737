"""`python -m bench --compare REV`: the stack at another commit against this checkout's.

How each row of the README's "What each change bought" is measured end to end: both
stacks up at once, driven in alternating rounds (``run.alternating``), so the machine's
drift (±20 % within minutes here) touches both sides alike.

1. ``git worktree add --detach`` of REV in a temporary folder, removed afterwards.
2. Each side's model trained from its own files (``python -m rasa_server train --force``
   in its folder), so a change to the domain or the data is compared too.
3. Each side's stack as `make bench` runs ours (``run.our_stack``: Rasa processes behind
   nginx, SQLite tracker, Redis lock store, the desk), Rasa and the action servers started
   from that side's folder.
4. ``compare:`` in bench/settings.yml: levels, messages, rounds. Prints each side's p50,
   throughput and CPU per message by process, and new / old ratios; writes compare.json.

Both sides run in this checkout's virtual environment: a REV that needs other packages is
not comparable this way.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Dict, Iterator, List

from bench import report
from bench.run import MACHINE, cpu_line, our_stack, side_by_side, train_ours
from bench.servers import ROOT

OLD, NEW = "old", "new"


@contextlib.contextmanager
def worktree(rev: str, repo: Path = ROOT) -> Iterator[Path]:
    """A detached checkout of ``rev`` in a temporary folder for the ``with`` block."""
    folder = Path(tempfile.mkdtemp(prefix="bench-compare-")) / "tree"
    subprocess.run(["git", "-C", str(repo), "worktree", "add", "--detach", "--quiet", str(folder), rev], check=True)
    try:
        yield folder
    finally:
        subprocess.run(["git", "-C", str(repo), "worktree", "remove", "--force", str(folder)], check=False)
        shutil.rmtree(folder.parent, ignore_errors=True)


def ratios(old: Dict[str, Any], new: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
    """New / old per level: p50, throughput and the CPU per message of all processes."""
    out = {}
    for before, after in zip(old["levels"], new["levels"]):
        cpu_old = before.get("cpu_ms_per_msg", {}).get(MACHINE)
        cpu_new = after.get("cpu_ms_per_msg", {}).get(MACHINE)
        out[str(after["clients"])] = {
            "p50": report.ratio(after["p50_ms"], before["p50_ms"]),
            "throughput": report.ratio(after["throughput_msg_s"], before["throughput_msg_s"]),
            "cpu_per_message": report.ratio(cpu_new, cpu_old),
        }
    return out


def run(rev: str, out: Path, settings: Dict[str, Any]) -> Dict[str, Any]:
    """Train both sides, drive both stacks side by side, print and write the comparison."""
    measured = {**settings, **settings["compare"]}
    run_dir = out / "compare"
    shutil.rmtree(run_dir, ignore_errors=True)
    with worktree(rev) as old_tree:
        sides = {OLD: old_tree, NEW: ROOT}
        models, training = {}, {}
        for label, project in sides.items():
            (run_dir / label).mkdir(parents=True)
            print(f"training {label} ({rev if label == OLD else 'this checkout'})…", flush=True)
            models[label], training[label] = train_ours(run_dir / label, None, project)
        with contextlib.ExitStack() as running:
            stacks: List[Any] = [
                (label, *our_stack(run_dir / label, measured, models[label], running, project=project, name=f"{label}-rasa"))
                for label, project in sides.items()
            ]
            result = side_by_side(stacks, measured)
    for label in sides:
        result[label].update(training[label])
    result["rev"] = rev
    result["new_over_old"] = ratios(result[OLD], result[NEW])
    print()
    rows = [{"side": label, **level} for label in sides for level in result[label]["levels"]]
    print(report.table(rows, ["side", "clients", "messages", "p50_ms", "p95_ms", "throughput_msg_s", "errors", "lost_turns"]))
    for label in sides:
        for level in result[label]["levels"]:
            print(f"{label}, {level['clients']} merchants — {cpu_line(level)}")
    print(f"new / old: {json.dumps(result['new_over_old'])}")
    report.write_json(result, out / "compare.json")
    print(f"written: {out / 'compare.json'} (logs in {run_dir})")
    return result
