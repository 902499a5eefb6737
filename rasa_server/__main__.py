"""``python -m rasa_server <rasa CLI arguments>``: Rasa's CLI with the runtime fixes."""
from rasa.__main__ import main

from rasa_server import action_validation

if __name__ == "__main__":
    action_validation.install()
    main()
