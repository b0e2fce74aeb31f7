"""The runtime of a run: a coordinator actor and one task actor per started task.

Nothing here imports the public API layer (sdax.processor, sdax.builders).
"""
