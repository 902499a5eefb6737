"""The Rasa side of this project's runtime: Rasa's own CLI started with the runtime fixes
applied, and the stores named in endpoints.yml.

``python -m rasa_server run ...`` takes exactly the arguments of ``rasa run``, and
``python -m rasa_server train ...`` those of ``rasa train``. The fixes are
small, tested replacements for upstream hot spots that cost real latency (see README,
"Performance"); each keeps Rasa's behaviour and only removes repeated work:

- ``action_validation``: action-server answers checked against a schema validated once;
- ``count_vectors``: the count-vectors featurizers' matrices counted without scikit-learn's
  per-call setup;
- ``graph_runner``: the predict graph run in a precomputed order instead of through dask;
- ``json_bodies``: request bodies to the action server (and other endpoints) encoded by ujson;
- ``model_inference``: DIET's and the ResponseSelector's one-message inference run through
  their traced TensorFlow function without ``tf.function``'s per-call lookup;
- ``rule_matching``: the rule policy tests a conversation's newest turn only against the
  rules naming its previous action (and those naming none), and stops at the longest rule;
- ``rule_states``: a rule policy prediction turns the conversation into states once, not
  twice;
- ``sparse_features``: featurizers' sparse matrices joined as COO without ``scipy.hstack``;
- ``tracker_copy``: a tracker copied before each action without replaying its events;
- ``training``: a forced training writes no training cache (nothing reads it), and training
  batches' sparse arrays are built with one concatenation per field.

The stores: ``tracker_store.TunedSQLTrackerStore`` (saved conversations kept in memory) and
``lock_store.AtomicRedisLockStore`` (Rasa's ticket lock as atomic Redis scripts).
"""
