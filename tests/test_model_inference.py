"""``OneBatchInference`` (the models of ``OneBatchDIETClassifier`` and
``IntentGatedResponseSelector``) gives upstream ``RasaModel.run_inference``'s outputs.

On the trained model: every held-out message's parse (DIET, and the ResponseSelector for
the FAQ questions) with upstream's ``run_inference`` and with ours, and the raw outputs of
both models — diagnostic data included — for one message and for a batch of several. Then
what must go upstream: a model not traced yet, several batches, an array the signature does
not take. The trained model's components build these models; a changed upstream method
refuses to build them; ``config.yml`` names them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, List

import numpy as np
import pytest
import yaml
from rasa.engine.graph import ExecutionContext, GraphSchema
from rasa.engine.storage.local_model_storage import LocalModelStorage
from rasa.engine.storage.resource import Resource
from rasa.utils.tensorflow.models import RasaModel

from nlu_components import model_inference
from nlu_components.diet_classifier import OneBatchDIETClassifier
from nlu_components.model_inference import OneBatchDIET, OneBatchDIET2BOW, OneBatchInference
from nlu_components.response_selector import IntentGatedResponseSelector
from rasa_server.replacements import ReplacementCheckError, Upstream
from tests.trained_model import held_out_texts

upstream = RasaModel.run_inference
ours = OneBatchInference.run_inference
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def agent(trained_agent):
    return trained_agent


@pytest.fixture
def upstream_calls(monkeypatch) -> List[int]:
    """Each batch size upstream's ``run_inference`` was called with, through ours."""
    calls: List[int] = []

    def counted(model, model_data, batch_size=1, output_keys_expected=None):
        calls.append(batch_size)
        return upstream(model, model_data, batch_size, output_keys_expected)

    monkeypatch.setattr(RasaModel, "run_inference", counted)
    return calls


def components(agent) -> Dict[str, Any]:
    """The loaded DIET and ResponseSelector components, by class name."""
    found = {
        type(node._component).__name__: node._component
        for node in agent.processor.graph_runner._instantiated_nodes.values()
        if hasattr(node._component, "model")
    }
    assert {"OneBatchDIETClassifier", "IntentGatedResponseSelector"} <= set(found)
    return found


def parse(agent, text: str) -> Dict[str, Any]:
    """The NLU parse of ``text``, as the processor's graph gives it."""
    from rasa.core.channels import UserMessage
    from rasa.engine.constants import PLACEHOLDER_MESSAGE, PLACEHOLDER_TRACKER
    from rasa.shared.core.trackers import DialogueStateTracker

    target = agent.processor.model_metadata.nlu_target
    (message,) = agent.processor.graph_runner.run(
        inputs={
            PLACEHOLDER_MESSAGE: [UserMessage(text, message_id="held-out")],
            PLACEHOLDER_TRACKER: DialogueStateTracker("parse", agent.domain.slots),
        },
        targets=[target],
    )[target]
    return message.as_dict(only_output_properties=True)


def with_inference(monkeypatch, inference: Callable, run: Callable[[], Any]) -> Any:
    monkeypatch.setattr(OneBatchInference, "run_inference", inference)
    return run()


def assert_same_outputs(expected: Any, actual: Any) -> None:
    """Same keys, and arrays equal to the bit with the same dtype and shape."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict) and expected.keys() == actual.keys()
        for key in expected:
            assert_same_outputs(expected[key], actual[key])
    elif isinstance(expected, np.ndarray):
        assert isinstance(actual, np.ndarray)
        assert (expected.dtype, expected.shape) == (actual.dtype, actual.shape)
        assert np.array_equal(expected, actual, equal_nan=True)
    else:
        assert expected == actual


def model_data_for(component, texts: List[str], agent) -> Any:
    """The component's model data for ``texts``, featurized by the model's own pipeline."""
    from rasa.shared.nlu.training_data.message import Message

    messages = []
    original = component._predict

    def keep(message):
        messages.append(message)
        return original(message)

    component._predict = keep  # on the instance, so that deleting it restores the class's
    try:
        for text in texts:
            parse(agent, text)
    finally:
        del component._predict
    assert len(messages) == len(texts) and all(isinstance(m, Message) for m in messages)
    return component._create_model_data(messages, training=False)


def test_every_held_out_parse_is_the_same(agent, monkeypatch, upstream_calls):
    texts = held_out_texts()
    assert len(texts) > 600
    faq = 0
    for text in texts:
        expected = with_inference(monkeypatch, upstream, lambda text=text: parse(agent, text))
        before = len(upstream_calls)
        actual = with_inference(monkeypatch, ours, lambda text=text: parse(agent, text))
        assert actual == expected, text
        # Upstream traced both functions above; ours never needs it for one message.
        assert len(upstream_calls) == before, text
        faq += expected["intent"]["name"] == "faq"
    assert faq > 50  # the ResponseSelector ran on these


@pytest.mark.parametrize("name", ["OneBatchDIETClassifier", "IntentGatedResponseSelector"])
@pytest.mark.parametrize(
    "texts, batch_size",
    [
        (["what does error 1000 mean"], 1),
        (["pos机报1000是什么意思", "how do I prevent it", "A920"], 3),
        (["是不是机器坏了", "what are the fees"], 64),
    ],
)
def test_raw_outputs_are_upstreams(agent, monkeypatch, upstream_calls, name, texts, batch_size):
    component = components(agent)[name]
    model_data = model_data_for(component, texts, agent)
    expected = upstream(component.model, model_data, batch_size)
    before = len(upstream_calls)
    actual = component.model.run_inference(model_data, batch_size)
    assert_same_outputs(expected, actual)
    assert "diagnostic_data" in actual and len(upstream_calls) == before
    # Keys filtered as upstream filters them.
    kept = component.model.run_inference(model_data, batch_size, output_keys_expected=[next(iter(expected))])
    assert list(kept) == [next(iter(expected))]


def test_several_batches_go_upstream(agent, upstream_calls):
    component = components(agent)["OneBatchDIETClassifier"]
    model_data = model_data_for(component, ["hi", "thanks", "商米P2"], agent)
    # (Only the scores: upstream cannot merge attention weights of different lengths.)
    actual = component.model.run_inference(model_data, 2, output_keys_expected=["i_scores"])
    assert upstream_calls == [2]
    assert list(actual) == ["i_scores"] and actual["i_scores"].shape[0] == 3


def test_a_model_not_traced_yet_goes_upstream_once(agent, monkeypatch, upstream_calls):
    component = components(agent)["OneBatchDIETClassifier"]
    model_data = model_data_for(component, ["hello"], agent)
    monkeypatch.setattr(component.model, "_tf_predict_step", None)
    first = component.model.run_inference(model_data)
    assert upstream_calls == [1] and component.model._tf_predict_step is not None
    second = component.model.run_inference(model_data)
    assert upstream_calls == [1]
    assert_same_outputs(first, second)


def batches_changed(monkeypatch, change: Callable[[List[np.ndarray]], None]) -> None:
    """Every prepared batch goes through ``change`` (ours and upstream's generator alike)."""
    from rasa.utils.tensorflow.data_generator import RasaDataGenerator

    original = RasaDataGenerator.prepare_batch

    def changed(*args, **kwargs):
        arrays = list(original(*args, **kwargs))
        change(arrays)
        return tuple(arrays)

    monkeypatch.setattr(RasaDataGenerator, "prepare_batch", staticmethod(changed))


def test_arrays_of_another_dtype_go_upstream_which_casts_them(agent, monkeypatch, upstream_calls):
    component = components(agent)["OneBatchDIETClassifier"]
    model_data = model_data_for(component, ["is it a hardware fault"], agent)

    def to_float64(arrays: List[np.ndarray]) -> None:
        arrays[:] = [a.astype(np.float64) if a.dtype == np.float32 else a for a in arrays]

    batches_changed(monkeypatch, to_float64)
    expected = upstream(component.model, model_data)
    actual = component.model.run_inference(model_data)
    assert upstream_calls == [1]  # ours went upstream (the direct call above is not counted)
    assert_same_outputs(expected, actual)


def test_an_array_the_signature_does_not_take_gets_upstreams_error(agent, monkeypatch, upstream_calls):
    component = components(agent)["OneBatchDIETClassifier"]
    model_data = model_data_for(component, ["hello"], agent)
    (specs,) = component.model._tf_predict_step.input_signature
    fixed = next(i for i, spec in enumerate(specs) if spec.shape[-1] is not None)

    def one_column_more(arrays: List[np.ndarray]) -> None:
        arrays[fixed] = np.concatenate([arrays[fixed], arrays[fixed][..., :1]], axis=-1)

    batches_changed(monkeypatch, one_column_more)
    with pytest.raises(ValueError, match="incompatible with input_signature") as theirs:
        upstream(component.model, model_data)
    with pytest.raises(ValueError) as mine:
        component.model.run_inference(model_data)
    assert upstream_calls == [1]
    assert str(mine.value) == str(theirs.value)


def test_the_trained_components_build_the_one_batch_models(agent):
    found = components(agent)
    assert type(found["OneBatchDIETClassifier"].model) is OneBatchDIET
    assert type(found["IntentGatedResponseSelector"].model) is OneBatchDIET2BOW


@pytest.mark.parametrize("component", [OneBatchDIETClassifier, IntentGatedResponseSelector])
def test_a_changed_upstream_method_refuses_to_build(monkeypatch, tmp_path, component):
    (checked,) = model_inference.UPSTREAM
    monkeypatch.setattr(model_inference, "UPSTREAM", (Upstream(checked.path, "0" * 64),))
    with pytest.raises(ReplacementCheckError) as error:
        component.create(
            component.get_default_config(), LocalModelStorage(tmp_path), Resource("model"), ExecutionContext(GraphSchema({}), "model")
        )
    assert f"{checked.path} (re-implemented by nlu_components/model_inference.py)" in str(error.value)


def test_config_names_the_components():
    pipeline = yaml.safe_load((ROOT / "config.yml").read_text(encoding="utf-8"))["pipeline"]
    names = [step["name"] for step in pipeline]
    assert "nlu_components.diet_classifier.OneBatchDIETClassifier" in names
    assert "nlu_components.response_selector.IntentGatedResponseSelector" in names
    assert not {"DIETClassifier", "ResponseSelector"} & set(names)
