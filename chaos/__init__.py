"""Chaos suite: the real stack under one fault per scenario, checked from three witnesses (python -m chaos)."""
