"""`make bench`: our stack and the stock Rasa starter bot under the same load, side by side.

1. Trains our model and creates the stock starter bot with `rasa init --no-prompt` in a
   temporary folder (that is its training), each timed alone on the machine.
2. Starts our stack with single-host production settings (one Rasa process per core,
   through rasa_server, behind nginx, sharing a Redis lock store and the SQLite tracker in
   WAL mode; an action server each; the desk) and the starter bot (stock config and
   `rasa run`), side by side.
3. Drives 1, 8 and 32 concurrent simulated merchants (bench/conversations.yml) over the REST
   channel, a bounded number of messages per level, each level on ours and on the baseline
   back to back; samples every process's RSS meanwhile.
4. Handoff: 50 merchants handed to a person at once on socket.io, one agent with the
   console's live stream open; merchant -> case page and agent reply -> merchant's socket
   (bench/handoff.py).
5. Scale-out: two Rasa processes (each with its action server) behind nginx, sharing
   PostgreSQL and Redis, against one Rasa process behind the same nginx.
6. Desk scale: a year of cases (200 000) seeded into PostgreSQL, the desk as the Procfile
   starts it; p95 of the queue, case, stats pages and the list API, the desk's RSS
   (bench/desk_scale.py; alone: `python -m bench --desk-scale`; results/bench/desk_scale.json).
7. Outage surge: with an incident posted, 500 merchants within 5 minutes over socket.io and
   REST, then the incident closed; before it, 40 reports from one city with none posted
   (bench/surge.py; alone: `python -m bench --surge`; results/bench/surge.json).
8. Retraining: the console's Train with a batch of reviewed examples, timed to the new model
   serving, and the held-out figures before and after (bench/retrain.py; alone:
   `python -m bench --retrain`; results/bench/retrain.json).
9. Checks every conversation kept every turn (Rasa's tracker API), prints the table, the
   ratios and the targets, writes results/bench/bench.json and results/bench/bench.png.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, TypeVar

import yaml

from bench import report
from bench.desk_scale import desk_scale_part, print_part as print_desk_scale
from bench.handoff import handoff_part
from bench.retrain import print_part as print_retrain, retrain_part
from bench.surge import checks as surge_checks, surge_part
from bench.load import LevelOutcome, load_conversations, run_level
from bench.servers import RASA, ROOT, Service, cpu_seconds, machine_busy_seconds, redis_server
from bench.stack import TF_ENV, RasaStack, desk_service
from common.privacy import mask_card_numbers
from tests.pg_server import PostgresServer

SETTINGS = Path(__file__).with_name("settings.yml")
# Besides the services, each part reads the CPU of this process (the simulated merchants and
# the RSS sampler) and of the whole machine: on two cores the load generator shares the
# machine with what it measures, and a part that keeps every core busy is capped by the
# machine, not by the stack (the scale-out's two Rasa processes).
LOAD = "load generator"
MACHINE = "all processes"
T = TypeVar("T")


class RssSampler:
    """Samples the RSS of every service twice a second and keeps each one's peak (MiB)."""

    def __init__(self, services: Callable[[], List[Service]]) -> None:
        self.services = services  # called each round: a stack adds its services as it starts
        self.peaks: Dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            for service in self.services():
                for name, kib in service.rss().items():
                    self.peaks[name] = max(self.peaks.get(name, 0.0), round(kib / 1024, 1))
            self._stop.wait(0.5)


def lost_turns(stack: RasaStack, outcome: LevelOutcome) -> List[str]:
    """Senders whose tracker does not hold exactly the messages they sent, in order."""
    lost = []
    for sender, sent in outcome.sent.items():
        try:
            events = stack.tracker(sender).get("events", [])
        except OSError as error:
            lost.append(f"{sender}: tracker unavailable ({error})")
            continue
        said = [event.get("text") for event in events if event.get("event") == "user"]
        if said not in (sent, [mask_card_numbers(text) for text in sent]):
            lost.append(f"{sender}: sent {len(sent)} messages, tracker holds {len(said)}")
    return lost


def measure(
    stack: RasaStack,
    label: str,
    clients: int,
    budget: int,
    settings: Dict[str, Any],
    services: List[Service],
    outcome: LevelOutcome,
    cpu: Dict[str, float],
) -> None:
    """Drive ``budget`` messages at ``clients`` merchants (progress bar); add what was
    measured to ``outcome`` and each service's CPU seconds to ``cpu``. A part after the
    first continues the conversation mix where the parts before it stopped, so a level
    driven in parts plays the blend a level driven at once would."""
    cpu_before = cpu_readings(services)
    bar = report.ProgressBar(f"{label}, {clients} merchants", budget)
    outcome.add(
        asyncio.run(
            run_level(
                stack.url,
                load_conversations(),
                clients,
                budget,
                tag=f"{stack.name}-{int(time.time() * 1000)}",
                progress=bar.advance,
                timeout=settings["timeout_s"],
                check_answers=stack.with_actions,
                first=outcome.resume_at(),
            )
        )
    )
    bar.close()
    for name, seconds in cpu_readings(services).items():
        cpu[name] = cpu.get(name, 0.0) + seconds - cpu_before[name]


def cpu_readings(services: List[Service]) -> Dict[str, float]:
    """CPU seconds used so far by each service, by this process (``LOAD``) and by the whole
    machine (``MACHINE``)."""
    readings = {service.name: service.cpu() for service in services}
    readings[LOAD] = cpu_seconds(os.getpid())
    readings[MACHINE] = machine_busy_seconds()
    return readings


def alternating(sides: Sequence[T], budget: int, rounds: int) -> List[Tuple[T, int]]:
    """The parts of a level compared across ``sides``: ``rounds`` rounds, each giving every
    side a share of the budget, the order reversed every other round (A B, B A, A B, …), so
    a steady drift touches every side alike and faster swings are averaged over several
    parts. Each side gets ``budget`` messages in all."""
    shares = [budget // rounds + (1 if part < budget % rounds else 0) for part in range(rounds)]
    return [(side, share) for part, share in enumerate(shares) for side in (sides if part % 2 == 0 else sides[::-1])]


def figures(stack: RasaStack, outcome: LevelOutcome, cpu: Dict[str, float], check_turns: bool = True) -> Dict[str, Any]:
    """A level's figures from what was measured: latencies, throughput, errors, CPU
    milliseconds per message by process, and conversations that lost a turn."""
    result = outcome.summary()
    if outcome.messages:
        result["cpu_ms_per_msg"] = {name: round(seconds * 1000 / outcome.messages, 1) for name, seconds in cpu.items()}
    if outcome.seconds and cpu.get(MACHINE):
        result["machine_busy_pct"] = round(100 * cpu[MACHINE] / (outcome.seconds * (os.cpu_count() or 1)), 1)
        # Messages per second of busy CPU: what the stack got out of the cores it was given.
        result["msg_per_busy_cpu_s"] = round(outcome.messages / cpu[MACHINE], 1)
    lost = lost_turns(stack, outcome) if check_turns else []
    result["lost_turns"] = len(lost)
    for line in (outcome.errors + lost)[:5]:
        print(f"    ! {line}")
    return result


def warm_up(stack: RasaStack, settings: Dict[str, Any]) -> None:
    """Play the conversation mix once, unmeasured, so first-call costs do not count as load."""
    asyncio.run(
        run_level(
            stack.url, load_conversations(), 2, settings["warmup_messages"], tag=f"warmup-{int(time.time())}", timeout=settings["timeout_s"]
        )
    )


# Training has the machine to itself: TensorFlow gets every core (the Makefile's setting),
# where a serving process gets one thread per pool (TF_ENV).
TRAIN_ENV = {
    **TF_ENV,
    "TF_INTER_OP_PARALLELISM_THREADS": str(os.cpu_count() or 1),
    "TF_INTRA_OP_PARALLELISM_THREADS": str(os.cpu_count() or 1),
    "OMP_NUM_THREADS": str(os.cpu_count() or 1),
}


def timed(args: List[str], cwd: Path, log: Path) -> float:
    """Train (or create) to completion with TRAIN_ENV, log the output, return the seconds."""
    started = time.perf_counter()
    with log.open("wb") as handle:
        # A fresh cache: Rasa would otherwise restore unchanged components and the figure
        # would not be a full training.
        cache = Path(tempfile.mkdtemp(prefix="rasa-cache-", dir=log.parent))
        done = subprocess.run(
            args,
            cwd=cwd,
            stdout=handle,
            stderr=subprocess.STDOUT,
            env={**os.environ, **TRAIN_ENV, "RASA_CACHE_DIRECTORY": str(cache)},
            timeout=1800,
        )
        shutil.rmtree(cache, ignore_errors=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:3])} failed, see {log}")
    return round(time.perf_counter() - started, 1)


def side_by_side(stacks: List[Tuple[str, RasaStack, List[Service]]], settings: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
    """Start the stacks one after the other (each cold start timed alone), warm each up, then
    drive every level in alternating parts (``alternating``; which stack starts alternates
    by level). The machine's speed drifts during a run (up to 2× within an hour here): a
    whole level on one stack and then on the other let a drift between the two land on one
    side of the ratio (2.16× at 8 merchants on 2026-11-25 15:23, while the starter bot's CPU
    per message rose from 38 to 60 ms over the run), and swings of ±20 % within minutes
    remained with halves (2.84× at 8 merchants at 15:40, 3.26× at 16:01)."""
    results: Dict[str, Dict[str, Any]] = {label: {"levels": []} for label, _, _ in stacks}
    samplers = {label: RssSampler(lambda stack=stack, extra=extra: extra + stack.services) for label, stack, extra in stacks}
    with contextlib.ExitStack() as running:
        for label, stack, _ in stacks:
            running.enter_context(samplers[label])
            running.callback(stack.stop)
            stack.start()
            results[label]["cold_start_s"] = round(stack.cold_start_s, 1)
            print(f"  {label}: first answer {stack.cold_start_s:.1f} s after start")
        for _, stack, _ in stacks:
            warm_up(stack, settings)
        for index, clients in enumerate(settings["levels"]):
            budget = settings["messages"][clients]
            parts = {label: (LevelOutcome(clients=clients), {}) for label, _, _ in stacks}
            order = stacks if index % 2 == 0 else stacks[::-1]
            for (label, stack, extra), share in alternating(order, budget, settings["rounds"]):
                outcome, cpu = parts[label]
                measure(stack, f"{label}, part", clients, share, settings, extra + stack.services, outcome, cpu)
            for label, stack, _ in stacks:
                results[label]["levels"].append(figures(stack, *parts[label]))
    for label, sampler in samplers.items():
        results[label]["peak_rss_mb"] = dict(sorted(sampler.peaks.items()))
    return results


def train_ours(run_dir: Path, model: Optional[Path], project: Path = ROOT) -> Tuple[Path, Dict[str, Any]]:
    """Our model (from ``project``'s files): trained here as `make train` does (timed)
    unless one is given."""
    result: Dict[str, Any] = {}
    if model is None:
        print("  training our model (full `python -m rasa_server train --force`)…", flush=True)
        result["training_s"] = timed(
            [
                sys.executable,
                "-m",
                "rasa_server",
                "train",
                "--domain",
                "domain",
                "--data",
                "data",
                "--config",
                "config.yml",
                "--out",
                str(run_dir / "models"),
                "--fixed-model-name",
                "pos1000",
                "--force",
            ],
            project,
            run_dir / "train-ours.log",
        )
        model = run_dir / "models" / "pos1000.tar.gz"
    result["model_mb"] = round(model.stat().st_size / 2**20, 1)
    return model, result


def our_stack(
    run_dir: Path, settings: Dict[str, Any], model: Path, running: contextlib.ExitStack, project: Path = ROOT, name: str = "rasa"
) -> Tuple[RasaStack, List[Service]]:
    """Our stack on one host with production settings: Rasa processes per settings.yml
    (each with its action server, both from ``project``) behind nginx, sharing the SQLite
    tracker (WAL) and a Redis lock store; the desk on SQLite. Redis and the desk are started
    now and stopped with ``running``."""
    redis, redis_url = redis_server(run_dir)
    running.callback(redis.stop)
    desk, desk_url = desk_service(run_dir, f"sqlite:///{run_dir / 'desk.db'}", "bench-token")
    running.callback(desk.stop)
    stack = RasaStack(
        run_dir,
        model,
        f"sqlite:///{run_dir / 'tracker.db'}",
        lock_store_url=redis_url,
        rasa_processes=settings["rasa_processes"],
        behind_nginx=True,
        desk_url=desk_url,
        desk_token="bench-token",
        project=project,
        name=name,
    )
    return stack, [desk, redis]


def baseline_stack(run_dir: Path) -> Tuple[RasaStack, Dict[str, Any]]:
    """The stock starter bot: `rasa init --no-prompt` (which trains it, timed), default
    settings, stock `rasa run`."""
    project = Path(tempfile.mkdtemp(prefix="rasa-init-", dir=run_dir))
    print("  creating and training the starter bot (`rasa init --no-prompt`)…", flush=True)
    training_s = timed([RASA, "init", "--no-prompt", "--init-dir", str(project)], project, run_dir / "train-baseline.log")
    model = sorted((project / "models").glob("*.tar.gz"))[-1]
    stack = RasaStack(run_dir, model, tracker_url=None, with_actions=False, project=project, name="baseline", launcher=[RASA])
    return stack, {"training_s": training_s, "model_mb": round(model.stat().st_size / 2**20, 1)}


def scale_out(run_dir: Path, settings: Dict[str, Any], model: Path) -> Dict[str, Any]:
    """Throughput with one and with two Rasa processes behind nginx, shared stores.

    Both topologies stay up, each with its own PostgreSQL databases, Redis and desk, and the
    load runs in alternating parts (1, 2, 2, 1, …; ``alternating``): run one after the
    other, a drift in the machine's speed between the two runs went straight into the
    ratio."""
    clients, budget = settings["scale_out"]["clients"], settings["scale_out"]["messages"]
    with contextlib.ExitStack() as running:
        postgres = PostgresServer().start()
        running.callback(postgres.stop)
        topologies = {}
        for processes in (1, 2):
            # Each topology logs (and keeps its nginx configuration) in its own folder.
            folder = run_dir / f"scale{processes}"
            folder.mkdir(exist_ok=True)
            redis, redis_url = redis_server(folder)
            running.callback(redis.stop)
            desk, desk_url = desk_service(folder, postgres.create_database(f"desk{processes}"), "bench-token")
            running.callback(desk.stop)
            stack = RasaStack(
                folder,
                model,
                postgres.create_database(f"tracker{processes}"),
                lock_store_url=redis_url,
                rasa_processes=processes,
                behind_nginx=True,
                desk_url=desk_url,
                desk_token="bench-token",
                name=f"scale{processes}-rasa",
                endpoints_file="deploy/endpoints.yml",
                credentials_file="deploy/credentials.yml",
                extra_env={"SOCKETIO_REDIS_URL": redis_url + "/1"},
            )
            running.callback(stack.stop)
            stack.start()
            warm_up(stack, settings)
            # PostgreSQL serves both topologies; its CPU is read only while one is driven.
            services = [desk, redis, postgres_service(postgres)] + stack.services
            topologies[processes] = (stack, services, LevelOutcome(clients=clients), {})
        for processes, share in alternating([1, 2], budget, settings["rounds"]):
            stack, services, outcome, cpu = topologies[processes]
            measure(stack, f"{processes} Rasa process(es), part", clients, share, settings, services, outcome, cpu)
        runs = [{"rasa_processes": processes, **figures(stack, outcome, cpu)} for processes, (stack, _, outcome, cpu) in topologies.items()]
    return {"clients": clients, "runs": runs, "ratio": report.ratio(runs[1]["throughput_msg_s"], runs[0]["throughput_msg_s"])}


def postgres_service(postgres: PostgresServer) -> Service:
    """The test PostgreSQL server seen as a Service, for its CPU figures."""
    service = Service("postgres", [], postgres.directory)
    service.process = postgres.process
    return service


def compare(result: Dict[str, Any], settings: Dict[str, Any]) -> Dict[str, Any]:
    """Our / baseline ratios and the issue's targets, each marked met or missed."""
    ours_levels = {level["clients"]: level for level in result["ours"]["levels"]}
    base = result.get("baseline")
    base_levels = {level["clients"]: level for level in base["levels"]} if base else {}
    targets = settings["targets"]
    ratios: Dict[str, Any] = {}
    checks: List[Dict[str, Any]] = []
    for clients, level in ours_levels.items():
        other = base_levels.get(clients, {})
        ratios[f"p50_at_{clients}"] = report.ratio(level["p50_ms"], other.get("p50_ms"))
        ratios[f"throughput_at_{clients}"] = report.ratio(level["throughput_msg_s"], other.get("throughput_msg_s"))
    checks.append(
        {
            "target": f"p50 ≤ {targets['p50_ms_at_1']} ms at 1 merchant",
            "value": ours_levels[1]["p50_ms"],
            "met": ours_levels[1]["p50_ms"] <= targets["p50_ms_at_1"],
        }
    )
    for clients in (8, 32):
        value = ratios.get(f"throughput_at_{clients}")
        checks.append(
            {
                "target": f"throughput ≥ {targets['throughput_ratio']}× baseline at {clients}",
                "value": value,
                "met": value is not None and value >= targets["throughput_ratio"],
            }
        )
    errors = sum(level["errors"] + level["lost_turns"] for level in ours_levels.values())
    checks.append({"target": "zero errors and lost turns", "value": errors, "met": errors == 0})
    if base:
        ours_rss = max(v for k, v in result["ours"]["peak_rss_mb"].items() if k.startswith("rasa"))
        base_rss = max(v for k, v in base["peak_rss_mb"].items() if k.startswith("baseline"))
        ratios["rasa_peak_rss"] = report.ratio(ours_rss, base_rss)
        checks.append(
            {"target": "Rasa process peak RSS ≤ baseline", "value": f"{ours_rss} MiB vs {base_rss} MiB", "met": ours_rss <= base_rss}
        )
    if "training_s" in result["ours"]:
        checks.append(
            {
                "target": f"training ≤ {targets['training_s']} s",
                "value": result["ours"]["training_s"],
                "met": result["ours"]["training_s"] <= targets["training_s"],
            }
        )
    if result.get("scale_out"):
        value = result["scale_out"]["ratio"]
        lost = sum(run["lost_turns"] + run["errors"] for run in result["scale_out"]["runs"])
        checks.append(
            {
                "target": f"2 Rasa processes ≥ {targets['scale_out_ratio']}× one",
                "value": value,
                "met": value is not None and value >= targets["scale_out_ratio"],
            }
        )
        checks.append({"target": "scale-out: no conversation lost a turn", "value": lost, "met": lost == 0})
    if result.get("handoff"):
        handoff = result["handoff"]
        limit = settings["handoff"]["target_p95_ms"]
        for direction, words in (
            ("merchant_to_agent", "merchant → agent's case page"),
            ("agent_to_merchant", "agent reply → merchant's widget"),
        ):
            value = handoff[direction]["p95_ms"]
            checks.append(
                {"target": f"handoff p95 ≤ {limit} ms, {words}", "value": value, "met": value <= limit and handoff[direction]["count"] > 0}
            )
        checks.append({"target": "handoff: every message arrived", "value": handoff["errors"], "met": handoff["errors"] == 0})
    return {"ratios": ratios, "targets": checks}


def cpu_line(level: Dict[str, Any]) -> str:
    """A level's CPU milliseconds per message by process, and how busy the machine was."""
    cpu = ", ".join(f"{k} {v}" for k, v in level.get("cpu_ms_per_msg", {}).items())
    busy = level.get("machine_busy_pct")
    return f"CPU ms per message: {cpu}" + (f"; machine busy {busy} %" if busy is not None else "")


def print_summary(result: Dict[str, Any]) -> None:
    rows = []
    for name in ("ours", "baseline"):
        for level in (result.get(name) or {}).get("levels", []):
            rows.append({"stack": name, **level})
    print()
    print(report.table(rows, ["stack", "clients", "messages", "p50_ms", "p95_ms", "p99_ms", "throughput_msg_s", "errors", "lost_turns"]))
    print()
    for name in ("ours", "baseline"):
        part = result.get(name)
        if part:
            rss = ", ".join(f"{k} {v}" for k, v in part["peak_rss_mb"].items())
            print(
                f"{name}: training {part.get('training_s', '-')} s, model {part['model_mb']} MiB, "
                f"cold start {part['cold_start_s']} s; peak RSS MiB: {rss}"
            )
    for name in ("ours", "baseline"):
        for level in (result.get(name) or {}).get("levels", []):
            print(f"{name}, {level['clients']} merchants — {cpu_line(level)}")
    if result.get("scale_out"):
        scale = result["scale_out"]
        for run in scale["runs"]:
            print(f"scale-out, {run['rasa_processes']} Rasa — {cpu_line(run)}")
        print()
        print(
            report.table(
                scale["runs"],
                [
                    "rasa_processes",
                    "messages",
                    "p50_ms",
                    "p95_ms",
                    "throughput_msg_s",
                    "errors",
                    "lost_turns",
                    "machine_busy_pct",
                    "msg_per_busy_cpu_s",
                ],
            )
        )
        print(f"scale-out ratio (2 / 1 Rasa processes): {scale['ratio']}")
    if result.get("handoff"):
        handoff = result["handoff"]
        print(f"\nhandoff, {handoff['merchants']} merchants at once × {handoff['rounds']} rounds:")
        print(
            report.table(
                [{"direction": name.replace("_", " "), **handoff[name]} for name in ("merchant_to_agent", "agent_to_merchant")],
                ["direction", "count", "p50_ms", "p95_ms"],
            )
        )
    print()
    print("ours / baseline: " + ", ".join(f"{k} {v}" for k, v in result["ratios"].items()))
    for check in result["targets"]:
        print(f"  [{'met' if check['met'] else 'MISSED'}] {check['target']}: {check['value']}")


def desk_scale_step(run_dir: Path, settings: Dict[str, Any], out: Path) -> int:
    """The desk with a year of cases on PostgreSQL: its table, targets and desk_scale.json
    (0 when every target is met)."""
    print(f"desk scale: {settings['desk_scale']['cases']} cases on PostgreSQL:")
    load_at_start = [round(value, 2) for value in os.getloadavg()]
    result = desk_scale_part(run_dir, settings)
    result["machine"] = {
        "cores": os.cpu_count(),
        "load_average_at_start": load_at_start,
        "load_average_at_end": [round(value, 2) for value in os.getloadavg()],
    }
    print_desk_scale(result)
    report.write_json(result, out / "desk_scale.json")
    print(f"written: {out / 'desk_scale.json'} (load average {load_at_start} → {result['machine']['load_average_at_end']})")
    return 0 if all(check["met"] for check in result["targets"]) else 1


def surge_step(run_dir: Path, settings: Dict[str, Any], out: Path, model: Path) -> int:
    """The outage surge: its figures, targets and surge.json (0 when every target is met)."""
    part = settings["surge"]
    print(
        f"outage surge: {part['merchants']} merchants within {part['spread_s']} s during an incident; "
        f"{part['proposal_merchants']} within {part['proposal_spread_s']} s without one:"
    )
    load_at_start = [round(value, 2) for value in os.getloadavg()]
    result = surge_part(run_dir, settings, model)
    result["checks"] = surge_checks(result, part)
    result["load_average"] = {"start": load_at_start, "end": [round(value, 2) for value in os.getloadavg()]}
    for key, value in result["surge"].items():
        if key not in ("error_examples", "rss_mib"):
            print(f"  {key}: {value}")
    print(f"proposal: {result['proposal']}")
    print(f"RSS (MiB) at the start and the end: {result['surge']['rss_mib']}")
    for check in result["checks"]:
        print(f"  {'met' if check['met'] else 'NOT met'}: {check['target']} ({check['value']})")
    for example in result["surge"]["error_examples"]:
        print(f"  error: {example}")
    report.write_json(result, out / "surge.json")
    print(f"written: {out / 'surge.json'} (load average {load_at_start} → {result['load_average']['end']})")
    return 0 if all(check["met"] for check in result["checks"]) else 1


def retrain_step(run_dir: Path, out: Path, model: Path, examples: Optional[int] = None) -> int:
    """Train → serving with bench/reviewed_batch.yml: its lines and retrain.json (0 when the
    target is met)."""
    load_at_start = [round(value, 2) for value in os.getloadavg()]
    print(f"retraining: the console's Train with a batch of reviewed examples (load average {load_at_start}):")
    result = retrain_part(run_dir, model, examples)
    result["load_average_at_start"] = load_at_start
    print_retrain(result)
    report.write_json(result, out / "retrain.json")
    print(f"written: {out / 'retrain.json'}")
    return 0 if result["target"]["met"] else 1


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "bench")
    parser.add_argument("--model", type=Path, help="use this model instead of training one")
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--skip-scale-out", action="store_true")
    parser.add_argument("--skip-handoff", action="store_true")
    parser.add_argument("--skip-desk-scale", action="store_true")
    parser.add_argument("--skip-surge", action="store_true")
    parser.add_argument("--surge", action="store_true", help="only the outage surge (bench/surge.py; results/bench/surge.json)")
    parser.add_argument("--desk-scale", action="store_true", help="only the desk with a year of cases on PostgreSQL (bench/desk_scale.py)")
    parser.add_argument("--skip-retrain", action="store_true")
    parser.add_argument("--retrain", action="store_true", help="only Train → serving with a reviewed batch (bench/retrain.py)")
    parser.add_argument("--retrain-examples", type=int, metavar="N", help="--retrain with the batch's first N examples")
    parser.add_argument("--quick", action="store_true", help="a tenth of the messages (smoke run)")
    parser.add_argument("--compare", metavar="REV", help="instead: the stack at commit REV against this checkout's (bench/compare.py)")
    args = parser.parse_args(argv)

    settings = yaml.safe_load(SETTINGS.read_text(encoding="utf-8"))
    if args.quick:
        for part in (settings, settings["compare"]):
            part["messages"] = {k: max(v // 10, k * 2) for k, v in part["messages"].items()}
        settings["scale_out"]["messages"] = max(settings["scale_out"]["messages"] // 10, 64)
        settings["handoff"]["merchants"] = max(settings["handoff"]["merchants"] // 10, 2)
        settings["desk_scale"]["cases"] = max(settings["desk_scale"]["cases"] // 10, 1000)
        settings["surge"].update(
            merchants=max(settings["surge"]["merchants"] // 10, 10), spread_s=max(settings["surge"]["spread_s"] // 10, 10)
        )
    if args.compare:
        from bench.compare import run as compare_with  # it builds on this module

        compare_with(args.compare, args.out, settings)
        return 0
    run_dir = args.out / "run"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    if args.desk_scale:
        return desk_scale_step(run_dir, settings, args.out)
    if args.retrain:
        return retrain_step(run_dir, args.out, args.model or ROOT / "models" / "pos1000.tar.gz", args.retrain_examples)
    if args.surge:
        return surge_step(run_dir, settings, args.out, args.model or train_ours(run_dir, None)[0])
    result: Dict[str, Any] = {
        "title": f"make bench — {os.cpu_count()} cores, {platform.python_version()}",
        "machine": {
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_average_at_start": [round(value, 2) for value in os.getloadavg()],
        },
        "settings": settings,
    }
    print("training (each alone on the machine):")
    model, result["ours"] = train_ours(run_dir, args.model)
    if not args.skip_baseline:
        base, result["baseline"] = baseline_stack(run_dir)
    print("ours and the baseline, level by level:")
    with contextlib.ExitStack() as running:
        stacks = [("ours", *our_stack(run_dir, settings, model, running))]
        if not args.skip_baseline:
            stacks.append(("baseline", base, []))
        for label, figures in side_by_side(stacks, settings).items():
            result[label].update(figures)
    if not args.skip_baseline:
        shutil.rmtree(base.project, ignore_errors=True)
    if not args.skip_handoff:
        print(f"handoff: {settings['handoff']['merchants']} merchants handed to a person at once:")
        result["handoff"] = handoff_part(run_dir, settings, model)
    if not args.skip_scale_out:
        print("scale-out:")
        result["scale_out"] = scale_out(run_dir, settings, model)
    if not args.skip_desk_scale:
        desk_scale_step(run_dir, settings, args.out)
    if not args.skip_surge:
        surge_step(run_dir, settings, args.out, model)
    if not args.skip_retrain:
        retrain_step(run_dir, args.out, model)
    # Other work on the machine skews every figure; the run records how busy it was.
    result["machine"]["load_average_at_end"] = [round(value, 2) for value in os.getloadavg()]
    result.update(compare(result, settings))
    print_summary(result)
    report.write_json(result, args.out / "bench.json")
    report.plot(result, args.out / "bench.png")
    print(f"load average at start {result['machine']['load_average_at_start']}, at end {result['machine']['load_average_at_end']}")
    print(f"\nwritten: {args.out / 'bench.json'}, {args.out / 'bench.png'} (logs in {run_dir})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
