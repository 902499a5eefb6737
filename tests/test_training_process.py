"""Retraining with the real trainer and the real scorer (issue 18): the desk's Train runs
the settings' command, ``python -m rasa_server train`` as the Makefile runs it, on a copy of
the project's data and domain with a cut-down config (the same components, one epoch each),
and reads its progress from Rasa's own output. ``scripts/score_model.py`` then scores that
model and the running one (the repository's) on the held-out sets and the test stories: one
epoch is far worse, so the gate refuses it, shows both figures and leaves the running model
as it was (nothing is sent to Rasa). ~1.5 minutes on a 2-core machine. The switch of a real
model whose figures held is tests/test_browser_retraining.py.
"""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from aiohttp.test_utils import TestClient, TestServer

from support_desk.app import create_app
from tests.harness.desk_app import AUTH, desk_settings
from tests.harness.processes import MODEL

pytestmark = pytest.mark.process  # trains a model (tests/harness/fixtures.py)

ROOT = Path(__file__).resolve().parent.parent


def tiny_project(directory: Path) -> Path:
    """config.yml with one epoch per model; domain/ and data/ copied."""
    config = yaml.safe_load((ROOT / "config.yml").read_text(encoding="utf-8"))
    for component in config["pipeline"]:
        if "epochs" in component:
            component["epochs"] = 1
    (directory / "config.yml").write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    shutil.copytree(ROOT / "domain", directory / "domain")
    shutil.copytree(ROOT / "data", directory / "data")
    return directory


async def test_a_real_training_far_worse_than_the_running_model_is_refused(tmp_path, rasa):
    project = tiny_project(tmp_path)
    served = tmp_path / "models" / "pos1000.tar.gz"
    served.parent.mkdir()
    shutil.copy(MODEL, served)
    settings = desk_settings(f"sqlite:///{tmp_path / 'desk.db'}", rasa.url)
    settings = replace(
        settings,
        training=replace(
            settings.training,
            domain=str(project / "domain"),
            data=str(project / "data"),
            config=str(project / "config.yml"),
            candidates=str(tmp_path / "candidates"),
            served_model=str(served),
            timeout_seconds=600,
        ),
    )
    app = create_app(settings)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        response = await client.post("/api/training", json={"full": True}, headers=AUTH)
        assert response.status == 202
        job = await response.json()
        seen = set()
        for _ in range(600 * 4):
            job = await (await client.get(f"/api/training/{job['id']}", headers=AUTH)).json()
            if job["progress"] and job["progress"]["component"]:
                seen.add(job["progress"]["component"])
            if job["state"] not in ("running", "evaluating"):
                break
            await asyncio.sleep(0.25)
        assert job["state"] == "refused", job["error"]
        # Rasa's "Starting to train component" lines and its epoch bars, as they came.
        assert {"OneBatchDIETClassifier", "IntentGatedResponseSelector"} & seen
        assert job["progress"]["of"] == 1 and job["progress"]["epoch"] == 1
        # Both models scored for real, side by side; the one-epoch model loses on intents.
        candidate, running = job["candidate_figures"], job["running_figures"]
        assert set(candidate) == set(running) == {"zh", "en", "stories"}
        assert running["zh"]["intent_macro_f1"] > 0.9 and candidate["zh"]["intent_macro_f1"] < running["zh"]["intent_macro_f1"]
        assert running["stories"]["total"] == candidate["stories"]["total"] > 0
        assert "worse than the running model" in job["error"] and "zh" in job["error"]
    assert rasa.loaded == [] and served.read_bytes() == MODEL.read_bytes()
    assert not list((tmp_path / "candidates").glob("*.tar.gz"))  # the refused candidate is not kept
