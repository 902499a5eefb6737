"""``python -m rasa_server <rasa CLI arguments>``: Rasa's CLI with the runtime and training
fixes."""
from rasa.__main__ import main

from rasa_server import (action_validation, count_vectors, graph_runner, json_bodies,
                         model_inference, rule_matching, rule_states, sparse_features,
                         tracker_copy, training)

if __name__ == "__main__":
    action_validation.install()
    count_vectors.install()
    graph_runner.install()
    json_bodies.install()
    model_inference.install()
    rule_matching.install()
    rule_states.install()
    sparse_features.install()
    tracker_copy.install()
    training.install()
    main()
