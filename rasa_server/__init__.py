"""Rasa's own CLI, started with the project's runtime fixes applied.

``python -m rasa_server run ...`` takes exactly the arguments of ``rasa run``. The fixes are
small, tested replacements for upstream hot spots that cost real latency (see README,
"Performance"); each keeps Rasa's behaviour and only removes repeated work.
"""
