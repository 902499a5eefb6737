"""The sequential predict-graph runner gives what Rasa's dask runner gives.

First on small graphs whose nodes record what they received (diamonds, several targets,
inputs, a node an input replaces, unresolved names, errors), then on the trained model:
every held-out message's parse and the policies' prediction at every turn of the test
stories, through both runners sharing the same loaded components.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List

import pytest
from rasa.engine.exceptions import GraphComponentException, GraphRunError
from rasa.engine.graph import ExecutionContext, GraphComponent, GraphSchema, SchemaNode
from rasa.engine.runner.dask import DaskGraphRunner
from rasa.engine.storage.local_model_storage import LocalModelStorage

from rasa_server.graph_runner import SequentialGraphRunner
from tests.trained_model import held_out_texts, story_turns

RAN: List[str] = []


class Recorder(GraphComponent):
    """Returns its name and what it received; ``fail: true`` makes it raise."""

    def __init__(self, config: Dict[str, Any]) -> None:
        self.config = config

    @classmethod
    def create(cls, config, model_storage, resource, execution_context) -> "Recorder":
        return cls(config)

    def run(self, **inputs: Any) -> Dict[str, Any]:
        RAN.append(self.config["name"])
        if self.config.get("fail"):
            raise ValueError("broken component")
        return {"name": self.config["name"], "inputs": inputs}


def node(name: str, needs: Dict[str, str], target: bool = False, **config: Any) -> SchemaNode:
    return SchemaNode(
        needs=needs, uses=Recorder, constructor_name="create", fn="run", config={"name": name, **config}, eager=True, is_target=target
    )


# a -> b, a -> c, (b, c) -> d ; e stands apart; d and e are targets.
DIAMOND = {
    "a": node("a", {"message": "__message__"}),
    "b": node("b", {"x": "a"}),
    "c": node("c", {"x": "a", "extra": "__extra__"}),
    "d": node("d", {"left": "b", "right": "c"}, target=True),
    "e": node("e", {}, target=True),
}


def runners(tmp_path: Path, nodes: Dict[str, SchemaNode]):
    schema = GraphSchema(nodes)
    storage = LocalModelStorage(tmp_path)
    context = ExecutionContext(schema, "test-model")
    return (DaskGraphRunner.create(schema, storage, context), SequentialGraphRunner.create(schema, storage, context))


def outcome(runner, **kwargs) -> Any:
    """What a run returns (or raises), and which nodes ran, in a comparable form."""
    RAN.clear()
    try:
        result = ("ok", runner.run(**kwargs))
    except Exception as error:  # the comparison includes which error and its message
        result = ("raised", type(error), str(error), type(error.__cause__))
    return result, sorted(RAN)


def check_order(plan) -> None:
    seen = set()
    for name, needs in plan:
        assert all(need in seen or need.startswith("__") for need in needs), name
        seen.add(name)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"inputs": {"__message__": "hi", "__extra__": 1}},
        {"inputs": {"__message__": "hi", "__extra__": 1}, "targets": ["d"]},
        {"inputs": {"__message__": "hi", "__extra__": 1}, "targets": ["b", "e"]},
        {"inputs": {"__message__": "hi", "__extra__": 1}, "targets": ["c", "b"]},
        # an input replaces the node of its name
        {"inputs": {"__message__": "hi", "__extra__": 1, "b": "given"}, "targets": ["d"]},
        # an input can be a target
        {"inputs": {"__message__": "hi", "__extra__": 1}, "targets": ["__extra__", "a"]},
        # a missing input: the node that needs it fails the same way
        {"inputs": {"__message__": "hi"}, "targets": ["d"]},
        # a string input naming a node is refused
        {"inputs": {"__message__": "a", "__extra__": 1}},
        {"inputs": None, "targets": ["e"]},
    ],
)
def test_same_outputs_errors_and_nodes_as_dask(tmp_path, kwargs):
    dask, sequential = runners(tmp_path, DIAMOND)
    expected = outcome(dask, **kwargs)
    assert outcome(sequential, **kwargs) == expected
    # twice: the second run comes from the stored plan
    assert outcome(sequential, **kwargs) == expected


def test_diamond_runs_each_node_once_after_its_dependencies(tmp_path):
    _, sequential = runners(tmp_path, DIAMOND)
    (status, result), ran = outcome(sequential, inputs={"__message__": "hi", "__extra__": 1})
    assert status == "ok" and set(result) == {"d", "e"}
    assert ran == ["a", "b", "c", "d", "e"]
    assert result["d"]["inputs"]["left"]["inputs"]["x"]["inputs"] == {"message": "hi"}
    assert result["d"]["inputs"]["right"]["inputs"]["extra"] == 1
    for plan in sequential._plans.values():
        check_order(plan)


def test_a_failing_component_raises_what_dask_raises(tmp_path):
    nodes = {**DIAMOND, "c": node("c", {"x": "a"}, fail=True)}
    dask, sequential = runners(tmp_path, nodes)
    expected = outcome(dask, inputs={"__message__": "hi"}, targets=["d"])
    assert expected[0][:2] == ("raised", GraphComponentException)
    assert expected[0][3] is ValueError
    assert outcome(sequential, inputs={"__message__": "hi"}, targets=["d"]) == expected


def test_a_clashing_input_is_refused_before_any_node_runs(tmp_path):
    _, sequential = runners(tmp_path, DIAMOND)
    (status, error, message, _), ran = outcome(sequential, inputs={"__message__": "d"})
    assert (status, error, ran) == ("raised", GraphRunError, [])
    assert "Input value 'd' clashes with a node name" in message


def test_the_plan_is_computed_once_per_targets_and_inputs(tmp_path, monkeypatch):
    _, sequential = runners(tmp_path, DIAMOND)
    calls = []
    original = GraphSchema.minimal_graph_schema
    monkeypatch.setattr(GraphSchema, "minimal_graph_schema", lambda self, targets=None: calls.append(targets) or original(self, targets))
    for _ in range(3):
        sequential.run(inputs={"__message__": "hi", "__extra__": 1}, targets=["d"])
    sequential.run(inputs={"__message__": "hi", "__extra__": 1}, targets=["e"])
    assert calls == [["d"], ["e"]]


def test_install_makes_the_processor_load_the_sequential_runner(monkeypatch):
    import rasa.core.processor

    from rasa_server import graph_runner

    monkeypatch.setattr(rasa.core.processor, "DaskGraphRunner", DaskGraphRunner)
    graph_runner.install()
    assert rasa.core.processor.DaskGraphRunner is SequentialGraphRunner


# --- the trained model -------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_runners(trained_agent):
    """Rasa's agent on the trained model, and a sequential runner on its loaded nodes."""
    dask = trained_agent.processor.graph_runner
    assert type(dask) is DaskGraphRunner
    # The same schema and the same loaded component objects (loading the model a second
    # time would take another GB): what differs is only how the graph is run.
    sequential = object.__new__(SequentialGraphRunner)
    sequential.__dict__.update(vars(dask), _plans={})
    return trained_agent, dask, sequential


def test_every_held_out_parse_is_the_same(model_runners):
    from rasa.core.channels import UserMessage
    from rasa.engine.constants import PLACEHOLDER_MESSAGE, PLACEHOLDER_TRACKER
    from rasa.shared.core.trackers import DialogueStateTracker

    agent, dask, sequential = model_runners
    target = agent.processor.model_metadata.nlu_target
    texts = held_out_texts()
    assert len(texts) > 600
    tracker = DialogueStateTracker("parse", agent.domain.slots)
    for text in texts:
        parses = [
            [
                message.as_dict(only_output_properties=True)
                for message in runner.run(
                    inputs={PLACEHOLDER_MESSAGE: [UserMessage(text, message_id="held-out")], PLACEHOLDER_TRACKER: tracker}, targets=[target]
                )[target]
            ]
            for runner in (dask, sequential)
        ]
        assert parses[0] == parses[1], text
        assert parses[0][0]["intent"]["name"] and len(parses[0][0]["intent_ranking"]) > 1


def test_every_policy_prediction_of_the_test_stories_is_the_same(model_runners):
    from rasa.engine.constants import PLACEHOLDER_TRACKER

    agent, dask, sequential = model_runners
    target = agent.processor.model_metadata.core_target
    turns = story_turns(agent)
    assert len(turns) > 150
    for tracker in turns:
        predictions = [runner.run(inputs={PLACEHOLDER_TRACKER: tracker}, targets=[target])[target] for runner in (dask, sequential)]
        assert predictions[0] == predictions[1], (tracker.sender_id, len(tracker.events))
