"""Retraining with the real trainer (issue 18): the desk's Train runs the settings' command,
``python -m rasa_server train`` as the Makefile runs it, on a copy of the project's data
and domain with a cut-down config (the same components, one epoch each), reads its
progress from Rasa's own output and switches the model it wrote in on a Rasa double.
The figures come in through the scorer seam (scoring for real is the held-out script and
the stories, timed by hand in the issue's note); ~1 minute on a loaded 2-core machine.
"""

from __future__ import annotations

import asyncio
import shutil
import tarfile
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from aiohttp.test_utils import TestClient, TestServer

from support_desk.app import create_app
from support_desk.training import TRAINING
from tests.harness.desk_app import AUTH, desk_settings
from tests.harness.training import GOOD, FakeScorer

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


async def test_train_runs_rasa_and_switches_the_model_it_wrote(tmp_path, rasa):
    project = tiny_project(tmp_path)
    served = tmp_path / "models" / "pos1000.tar.gz"
    served.parent.mkdir()
    served.write_text("model-0", encoding="utf-8")
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
            timeout_seconds=300,
        ),
    )
    app = create_app(settings)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        app[TRAINING].scorer = FakeScorer(GOOD)
        response = await client.post("/api/training", json={"full": True}, headers=AUTH)
        assert response.status == 202
        job = await response.json()
        seen = set()
        for _ in range(300 * 4):
            job = await (await client.get(f"/api/training/{job['id']}", headers=AUTH)).json()
            if job["progress"] and job["progress"]["component"]:
                seen.add(job["progress"]["component"])
            if job["state"] not in ("running", "evaluating"):
                break
            await asyncio.sleep(0.25)
        assert job["state"] == "switched", job["error"]
        # Rasa's "Starting to train component" lines and its epoch bars, as they came.
        assert {"OneBatchDIETClassifier", "IntentGatedResponseSelector"} & seen
        assert job["progress"]["of"] == 1 and job["progress"]["epoch"] == 1
        with tarfile.open(job["served_model"]) as model:
            assert any(name.endswith("metadata.json") for name in model.getnames())
        assert rasa.loaded == [job["served_model"]] and served.read_bytes() == Path(job["served_model"]).read_bytes()
