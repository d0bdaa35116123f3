"""Surveys: NPS and short satisfaction surveys, sent by email with market-research consent, answered once
through a signed link or captured by the call centre or a rep; each answer is a ``survey.answered`` item."""
