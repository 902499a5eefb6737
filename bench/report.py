"""How the benchmark shows what it measured: a progress bar, a table, JSON and a PNG plot."""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path
from typing import Any, Dict, List, Optional


class ProgressBar:
    """A one-line progress bar on stderr for a bounded number of messages."""

    def __init__(self, label: str, total: int, width: int = 30) -> None:
        self.label, self.total, self.width = label, total, width
        self.done = 0
        # Redrawn in place on a terminal; a log (CI) gets the finished bar only.
        self.live = sys.stderr.isatty()
        self._lock = threading.Lock()
        self.advance(0)

    def advance(self, count: int = 1) -> None:
        with self._lock:
            self.done = min(self.total, self.done + count)
            if self.live:
                self._draw()

    def _draw(self) -> None:
        filled = int(self.width * self.done / self.total) if self.total else self.width
        sys.stderr.write(f"\r  {self.label:<28} [{'#' * filled}{'.' * (self.width - filled)}] {self.done}/{self.total}")
        sys.stderr.flush()

    def close(self) -> None:
        if not self.live:
            self._draw()
        sys.stderr.write("\n")
        sys.stderr.flush()


def table(rows: List[Dict[str, Any]], columns: List[str]) -> str:
    """A plain fixed-width table."""
    cells = [[str(row.get(column, "")) for column in columns] for row in rows]
    widths = [max(len(column), *(len(cell[i]) for cell in cells)) for i, column in enumerate(columns)]
    line = "  ".join(column.rjust(width) for column, width in zip(columns, widths))
    body = ["  ".join(cell[i].rjust(widths[i]) for i in range(len(columns))) for cell in cells]
    return "\n".join([line, "-" * len(line), *body])


def ratio(ours: Optional[float], baseline: Optional[float]) -> Optional[float]:
    if not ours or not baseline:
        return None
    return round(ours / baseline, 2)


def write_json(result: Dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def plot(result: Dict[str, Any], path: Path) -> None:
    """Latency and throughput against concurrency, ours next to the baseline; scale-out bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stacks = [(name, result[name]) for name in ("ours", "baseline") if result.get(name)]
    scale = result.get("scale_out")
    panels = 3 if scale else 2
    figure, axes = plt.subplots(1, panels, figsize=(5 * panels, 4))
    for name, stack in stacks:
        levels = stack["levels"]
        clients = [level["clients"] for level in levels]
        axes[0].plot(clients, [level["p50_ms"] for level in levels], marker="o", label=f"{name} p50")
        axes[0].plot(clients, [level["p95_ms"] for level in levels], marker="x", linestyle="--", label=f"{name} p95")
        axes[1].plot(clients, [level["throughput_msg_s"] for level in levels], marker="o", label=name)
    for axis, title, unit in ((axes[0], "latency per message", "ms"), (axes[1], "throughput", "messages / s")):
        axis.set_xscale("log", base=2)
        axis.set_xlabel("concurrent merchants")
        axis.set_ylabel(unit)
        axis.set_title(title)
        axis.grid(True, alpha=0.3)
        axis.legend()
    if scale:
        names = [f"{run['rasa_processes']} Rasa" for run in scale["runs"]]
        values = [run["throughput_msg_s"] for run in scale["runs"]]
        axes[2].bar(names, values, color=["#888", "#2a7"][: len(values)])
        axes[2].set_title(f"scale-out, {scale['clients']} merchants")
        axes[2].set_ylabel("messages / s")
        for index, value in enumerate(values):
            axes[2].annotate(f"{value}", (index, value), ha="center", va="bottom")
    figure.suptitle(result.get("title", "make bench"))
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
