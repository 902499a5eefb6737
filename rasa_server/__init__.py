"""The Rasa side of this project's runtime: Rasa's own CLI started with the runtime fixes
applied, and the tuned SQL tracker store (tracker_store.py) named in endpoints.yml.

``python -m rasa_server run ...`` takes exactly the arguments of ``rasa run``. The fixes are
small, tested replacements for upstream hot spots that cost real latency (see README,
"Performance"); each keeps Rasa's behaviour and only removes repeated work.
"""
