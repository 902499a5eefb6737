"""Retraining from the console, timed (``python -m bench --retrain``; results/bench/retrain.json).

1. A scratch models folder holds a copy of the model (the Procfile's, ``--model`` or the one
   ``make train`` wrote); Rasa serves it, started as the Procfile starts it, and the desk runs
   as the Procfile runs it with ``DESK_MODELS_DIR`` there and ``NLU_REVIEWED_FILE`` holding
   bench/reviewed_batch.yml: what the NLU inbox writes once an operator has labelled a batch.
2. Each batch message is parsed by the running model (``POST /model/parse``): how many it
   gets right before.
3. ``POST /api/training`` (the console's Train) and the job is followed every 0.2 s until
   Rasa's ``GET /status`` names the new model: the seconds of training, scoring (the
   candidate and, on this first job, the running model at the same time) and the switch,
   and the whole time from Train to the new model serving (target: under 2 minutes).
4. The held-out figures of both models (the gate's) and the batch parsed again. A refused
   fine-tune is followed by Train with "full training", as the refusal tells the operator.
   ``--retrain-examples N`` takes the batch's first N examples (one: a single label).
"""

from __future__ import annotations

import os
import secrets
import shutil
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import yaml

from bench.stack import RasaStack, desk_service
from support_desk.nlu_data import reviewed_yaml
from tests.harness.http import request

BATCH = Path(__file__).with_name("reviewed_batch.yml")
TARGET_S = 120.0


def batch_examples(path: Path = BATCH) -> List[Tuple[str, str]]:
    """(text, intent) of every example in a Rasa NLU file; ``faq/key`` stays whole."""
    examples = []
    for block in yaml.safe_load(path.read_text(encoding="utf-8"))["nlu"]:
        for line in block["examples"].splitlines():
            if line.strip().startswith("- "):
                examples.append((line.strip()[2:].strip(), block["intent"]))
    return examples


def understood(stack: RasaStack, examples: List[Tuple[str, str]]) -> int:
    """How many examples the model Rasa serves now labels as the batch does."""
    right = 0
    for text, label in examples:
        _, parse = request("POST", f"{stack.url}/model/parse?token={stack.token}", {"text": text})
        name = parse["intent"]["name"]
        if "/" in label:
            key = (parse.get("response_selector", {}).get("faq", {}).get("response", {}) or {}).get("intent_response_key")
            right += name == "faq" and key == label
        else:
            right += name == label
    return right


def served_model(stack: RasaStack) -> str:
    return request("GET", f"{stack.url}/status?token={stack.token}")[1]["model_file"]


def follow(stack: RasaStack, desk_url: str, token: str, full: bool, timeout_s: float) -> Dict[str, Any]:
    """One press of Train, followed to its end: the job and the seconds of each step."""
    first_model = served_model(stack)
    started = time.monotonic()
    auth = {"Authorization": f"Bearer {token}"}
    _, job = request("POST", f"{desk_url}/api/training", {"full": full}, auth)
    marks: Dict[str, float] = {}
    serving_s: Optional[float] = None
    while time.monotonic() - started < timeout_s:
        _, job = request("GET", f"{desk_url}/api/training/{job['id']}", headers=auth)
        marks.setdefault(job["state"], time.monotonic() - started)
        if job.get("candidate_figures"):
            marks.setdefault("scored", time.monotonic() - started)
        if serving_s is None and served_model(stack) != first_model:
            serving_s = time.monotonic() - started
        if job["state"] not in ("running", "evaluating") and (serving_s is not None or job["state"] != "switched"):
            break
        time.sleep(0.2)
    evaluating, scored = marks.get("evaluating"), marks.get("scored")
    return {
        "mode": job["mode"],
        "state": job["state"],
        "error": job.get("error"),
        "seconds": {
            "training": round(evaluating, 1) if evaluating is not None else None,
            "scoring": round(scored - evaluating, 1) if scored is not None and evaluating is not None else None,
            "switch": round(serving_s - scored, 1) if serving_s is not None and scored is not None else None,
            "decided": round(marks[job["state"]], 1) if job["state"] in marks else None,
            "train_to_serving": round(serving_s, 1) if serving_s is not None else None,
        },
        "figures": {"running": job.get("running_figures"), "candidate": job.get("candidate_figures")},
    }


def retrain_part(run_dir: Path, model: Path, examples_count: Optional[int] = None, timeout_s: float = 900) -> Dict[str, Any]:
    """Train → serving with the batch (its first ``examples_count`` examples), on this
    machine: the console's Train, and when the fine-tune is refused, Train with "full
    training" as its message tells the operator. The figures of bench/retrain.json."""
    models = run_dir / "retrain-models"
    shutil.rmtree(models, ignore_errors=True)
    models.mkdir(parents=True)
    copy = models / "pos1000.tar.gz"
    shutil.copy(model, copy)  # newer than config.yml and domain/: the desk fine-tunes it
    examples = batch_examples()[:examples_count]
    reviewed = run_dir / "retrain-reviewed.yml"
    reviewed.write_text(reviewed_yaml((intent, text) for text, intent in examples), encoding="utf-8")
    token = secrets.token_hex(16)
    stack = RasaStack(run_dir, copy, f"sqlite:///{run_dir / 'retrain-tracker.db'}", name="retrain-rasa")
    desk = None
    jobs: List[Dict[str, Any]] = []
    try:
        stack.start()
        desk, desk_url = desk_service(
            run_dir,
            f"sqlite:///{run_dir / 'retrain-desk.db'}",
            token,
            rasa_url=stack.url,
            rasa_token=stack.token,
            extra_env={"DESK_MODELS_DIR": str(models), "NLU_REVIEWED_FILE": str(reviewed)},
        )
        before = understood(stack, examples)
        jobs.append(follow(stack, desk_url, token, False, timeout_s))
        if jobs[-1]["state"] == "refused" and jobs[-1]["mode"] == "finetune":
            jobs.append(follow(stack, desk_url, token, True, timeout_s))
        after = understood(stack, examples)
    finally:
        if desk is not None:
            desk.stop()
        stack.stop()
    switched = next((job for job in jobs if job["state"] == "switched"), None)
    serving_s = switched["seconds"]["train_to_serving"] if switched else None
    return {
        "batch": {"examples": len(examples), "understood_before": before, "understood_after": after},
        "jobs": jobs,
        "target": {
            "target": f"Train → the new model serving under {TARGET_S:.0f} s",
            "value": serving_s,
            "met": serving_s is not None and serving_s < TARGET_S,
        },
        "load_average_at_end": [round(value, 2) for value in os.getloadavg()],
    }


def print_part(result: Dict[str, Any]) -> None:
    """The part's lines for the terminal."""
    batch = result["batch"]
    total = batch["examples"]
    print(f"  batch understood: {batch['understood_before']}/{total} before, {batch['understood_after']}/{total} after")
    for job in result["jobs"]:
        seconds = job["seconds"]
        print(f"  job: {job['mode']} → {job['state']}" + (f" ({job['error']})" if job["error"] else ""))
        print(
            f"    training {seconds['training']} s, scoring {seconds['scoring']} s, decided at {seconds['decided']} s; "
            f"switch {seconds['switch']} s: Train → serving {seconds['train_to_serving']} s"
        )
        running, candidate = job["figures"]["running"] or {}, job["figures"]["candidate"] or {}
        for language in sorted(set(running) - {"stories"}):
            for figure in ("intent_macro_f1", "faq_macro_f1"):
                new = (candidate.get(language) or {}).get(figure, float("nan"))
                print(f"    {language} {figure}: {running[language][figure]:.3f} → {new:.3f}")
        if "stories" in running:
            new_stories = (candidate.get("stories") or {}).get("correct")
            print(f"    stories: {running['stories']['correct']}/{running['stories']['total']} → {new_stories}")
    target = result["target"]
    print(f"  [{'met' if target['met'] else 'MISSED'}] {target['target']}: {target['value']}")
