"""The test harness: everything a test needs to start real processes, in one place.

Test modules import from here (and from the platform fakes next to them), never from
another test module.

* ``processes`` — the Procfile's production commands started on loopback ports
  (``scripts/launch.py``), waiting for a process's health URL, ``wait_until``;
* ``http`` — JSON and raw HTTP calls to the processes;
* ``desk`` — the support desk process; ``desk_app`` — the desk app in-process
  (aiohttp's test client, a Rasa HTTP API double, console and store helpers);
* ``stack`` — desk, action server and Rasa wired as ``make run`` wires them (the desk on
  SQLite or on a PostgreSQL that can be stopped, each process killable and startable
  again), a WeCom / Official Account platform double, a merchant's walk to a handoff;
* ``wecom_kf`` — a 微信客服 merchant's side against the fake platform;
* ``browser`` — Debian's chromium for Playwright;
* ``actions`` — helpers for the custom actions' unit tests;
* ``fixtures`` — the shared pytest fixtures (registered by ``tests/conftest.py``: one
  session-wide ``stack`` for every module that needs that shape) and the ``process``
  marker set on every test that starts a process or needs the trained model.

The platform fakes stay next to the tests (``fake_wecom_kf``, ``fake_official_account``,
``chat_platforms``, ``recording_desk``, ``wecom_protocol``), as does ``pg_server``.
"""
