"""The Rasa side of this project's runtime: Rasa's own CLI started with the runtime fixes
applied, and the stores named in endpoints.yml.

``python -m rasa_server run ...`` takes exactly the arguments of ``rasa run``, and
``python -m rasa_server train ...`` those of ``rasa train``. The fixes are small, tested
replacements for upstream hot spots that cost real latency; each keeps Rasa's behaviour and
only removes repeated work. ``rasa_server/replacements.py`` is the one list of them (what
each replaces, why, what it buys) and refuses to start on a Rasa other than the one they
were checked against.

The stores: ``tracker_store.TunedSQLTrackerStore`` (saved conversations kept in memory) and
``lock_store.AtomicRedisLockStore`` (Rasa's ticket lock as atomic Redis scripts).
"""
