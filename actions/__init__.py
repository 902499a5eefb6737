"""Custom actions of the POS error 1000 assistant (run by ``python -m actions.server``)."""
