"""The runtime of a run: a coordinator actor and one task actor per started task.

Nothing here imports the public API layer (sdax.processor); tests/test_architecture.py
says which modules each layer may import.
"""
