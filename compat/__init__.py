"""Checks that sdax stays a drop-in for sdax 0.7.2, run against the real 0.7.2 package."""
