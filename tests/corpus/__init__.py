"""Committed corpora of hostile and valid input (see each one's generate module)."""
