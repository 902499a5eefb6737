"""The action server on loopback: ``python -m actions.server --actions actions --port 5055``.

rasa-sdk 3.6's ``rasa run actions`` has no ``--interface`` option and no credential: it
binds the address in ``SANIC_HOST`` and falls back to ``0.0.0.0``, so anyone who can
reach the machine could run the custom actions (create escalations, read ticket
status). This wrapper takes the same arguments as ``rasa run actions`` and binds
``ACTIONS_HOST`` (default ``127.0.0.1``); Rasa, on the same machine, is its only client.
A deployment that puts the action server on another host sets ``ACTIONS_HOST`` and
keeps the port behind its private network.
"""

from __future__ import annotations

import os
import sys
from typing import List, Optional

DEFAULT_HOST = "127.0.0.1"


def bind_address(environ=os.environ) -> str:  # noqa: ANN001
    """The address the action server listens on."""
    return (environ.get("ACTIONS_HOST") or "").strip() or DEFAULT_HOST


def main(argv: Optional[List[str]] = None) -> None:
    """Parse ``rasa run actions`` arguments and run rasa-sdk's server on ``bind_address()``."""
    from rasa_sdk.__main__ import main_from_args
    from rasa_sdk.endpoint import create_argument_parser

    os.environ["SANIC_HOST"] = bind_address()  # the only host setting rasa_sdk.endpoint.run reads
    args = create_argument_parser().parse_args(sys.argv[1:] if argv is None else argv)
    args.actions = args.actions or "actions"
    main_from_args(args)


if __name__ == "__main__":
    main()
