"""The learning loop end to end, in the real browser on the stack ``make run`` starts (Rasa,
action server and desk as the Procfile launches them): a message the bot misunderstands
reaches the NLU inbox through Rasa's event broker; the operator labels it and presses Train;
the desk fine-tunes the running model with the settings' command (``python -m rasa_server
train --finetune``), scores the candidate and the running model with ``scripts/score_model.py``
and switches the candidate in on Rasa (``PUT /model``) because its figures held; the same
message is then understood; one click rolls back and Rasa serves the old model again.

The refusal of a worse model with real figures is in tests/test_training_process.py. This
test trains and scores for real: ~3 minutes on this 2-core machine.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Iterator, Optional

import pytest
from playwright.async_api import async_playwright

from support_desk.config import load_settings
from support_desk.training import worse
from tests.harness.browser import CHROMIUM, CHROMIUM_ARGS, log_in, SHOTS
from tests.harness.http import request
from tests.harness.processes import MODEL, wait_until
from tests.harness.stack import RASA_TOKEN, Stack

pytestmark = pytest.mark.process  # trains a model and starts chromium (tests/harness/fixtures.py)

# Messages of the kinds merchants type in a hurry, with the intent an operator gives them,
# that the inbox files (the model falls back or is unsure). The test uses the first one the
# running model gets wrong; once the training data teaches the model all of them, add one
# here (the test says so).
MISUNDERSTOOD = [
    ("一千又出来了 有啥招", "ask_how_to_fix"),
    ("钱是不是卡在半路了 报了个1000", "ask_affects_transactions"),
    ("first thing this morning 1000 on the reader, what do i press", "ask_how_to_fix"),
]
TRAINING_SECONDS = 600  # the job's whole run (training, scoring, switch) on a loaded machine


@pytest.fixture
def own_stack(tmp_path: Path) -> Iterator[Stack]:
    """A stack of this test's own: its model is switched and rolled back (the session's
    shared stack keeps the repository's). The desk's models folder is ``tmp_path/models``
    (tests/harness/desk.py), so the model Rasa starts with is a copy there."""
    models = tmp_path / "models"
    models.mkdir()
    model = models / "pos1000.tar.gz"
    shutil.copy(MODEL, model)  # newer than config.yml and domain/: the desk fine-tunes it
    running = Stack(tmp_path, model=model)
    yield running
    running.stop()


def parsed(stack: Stack, text: str) -> str:
    """The intent Rasa's running model gives ``text``."""
    status, body = request("POST", f"{stack.rasa_url}/model/parse?token={RASA_TOKEN}", {"text": text})
    assert status == 200, body
    return body["intent"]["name"]


def served(stack: Stack) -> str:
    """The name of the model file Rasa serves (its /status gives the name only)."""
    return request("GET", f"{stack.rasa_url}/status?token={RASA_TOKEN}")[1]["model_file"]


def inbox_entry(stack: Stack, text: str) -> Optional[dict]:
    status, body = stack.desk_api("GET", "/api/nlu/inbox?limit=200")
    assert status == 200, body
    return next((item for item in body["items"] if item["text"] == text), None)


async def test_label_train_switch_understood_then_roll_back(own_stack: Stack) -> None:
    assert Path(CHROMIUM).exists(), "chromium missing: apt-get install chromium (.ci/run does)"
    SHOTS.mkdir(parents=True, exist_ok=True)
    stack = own_stack
    wrong = [(text, intent) for text, intent in MISUNDERSTOOD if parsed(stack, text) != intent]
    assert wrong, "the running model understands every message of MISUNDERSTOOD: add one it gets wrong"
    text, intent = wrong[0]
    before_model, before_intent = served(stack), parsed(stack, text)
    # The merchant writes it; the broker files it in the inbox (the bot was unsure or wrong).
    stack.say("retrain-merchant", text)
    entry = wait_until(lambda: inbox_entry(stack, text), 30, "the message in the NLU inbox")
    assert entry["reasons"], entry

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = await browser.new_page(viewport={"width": 1200, "height": 900}, locale="zh-CN")
        page.set_default_timeout(60_000)
        await log_in(page, stack.desk_url, "admin", stack.desk.password)

        await page.click("#nav-nlu")
        row = page.locator("tr", has_text=text)
        await row.locator("input[name=intent]").fill(intent)
        await row.locator("button", has_text="确认").click()
        await page.wait_for_selector(f"text=已标注为 {intent}")

        await page.click("#nav-training")
        await page.click("#train")
        # The page reloads itself every 3 s while the job runs; the job's row says how it ended.
        await page.wait_for_selector("#trainings tr#training-1 td.state:text-is('已上线')", timeout=TRAINING_SECONDS * 1000)
        await page.screenshot(path=str(SHOTS / "console-training.png"), full_page=True)
        status, job = stack.desk_api("GET", "/api/training/1")
        assert status == 200 and job["state"] == "switched", job
        assert job["mode"] == "finetune", job
        # Switched in because its figures held (both models scored, the gate's tolerance).
        assert set(job["candidate_figures"]) == set(job["running_figures"]) == {"zh", "en", "stories"}
        assert worse(job["candidate_figures"], job["running_figures"], load_settings().training.tolerance) == [], job
        assert served(stack) == Path(job["served_model"]).name != before_model
        assert parsed(stack, text) == intent  # the same message, understood now

        await page.click("#rollback")
        await page.wait_for_selector("#trainings tr#training-1 td.state:text-is('已回滚')")
        await browser.close()
    assert served(stack) == Path(job["previous_model"]).name
    assert parsed(stack, text) == before_intent  # the old model again, as it was
