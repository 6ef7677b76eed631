"""The layer that wires everything together: the `facility` command, the demo and its
desk, simulated history, and the service launchers for tests and bench.

It sits on top, alone: it may import every package; no package imports it.
"""
