"""Spoken prompts and tones: the set (prompts.py), the tones (tones.py), the rendered cache
(bank.py) and the audio thread (output.py)."""
