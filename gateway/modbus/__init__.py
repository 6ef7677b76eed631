"""Modbus polling: the request planner and the bus poller."""
