"""Custom Rasa NLU components for mixed Chinese / English merchant messages."""
