"""The layer that wires everything together: the `facility` command (mounting each
package's own commands), the commands that cross packages (check, demo, history, broker
config), the demo and its desk, simulated history, and the service launchers for tests
and bench.

It sits on top, alone: it may import every package; no package imports it.
"""
