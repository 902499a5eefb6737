"""Dialogue policies of the assistant (Rasa graph components, listed in config.yml)."""
