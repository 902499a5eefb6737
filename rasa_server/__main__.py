"""``python -m rasa_server <rasa CLI arguments>``: Rasa's CLI with the runtime and training
fixes, which refuses to start on a Rasa they were not checked against
(``rasa_server.replacements``)."""

import sys

from rasa.__main__ import main

from rasa_server.replacements import ReplacementCheckError, install_all

if __name__ == "__main__":
    try:
        install_all()
    except ReplacementCheckError as error:
        sys.exit(f"rasa_server: {error}")  # exit status 1, the message on stderr
    main()
