"""Optional glue for where sdax runs: ASGI services, arq workers, metrics backends.

Each module imports its third-party package only when it is imported itself;
`import sdax` imports none of them.
"""
