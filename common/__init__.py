"""What the bot side (actions, channels, Rasa's event broker) and the support desk share,
without either importing the other: card and phone masking (``privacy``), ticket numbers
(``tickets``), how an error code is written (``error_codes``), the business-hours clock and its data (``hours``, ``business_hours.yml``),
the transcript's words (``transcript_text``), which picture a body is (``images``) and
whether an incident's scope covers a merchant (``incident_scope``). The bot side reaches
the desk only through its HTTP API; ``tests/test_boundaries.py`` keeps it so."""
