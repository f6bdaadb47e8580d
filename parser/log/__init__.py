"""Analyses of a capture's event log (--mode log): what was live at a moment, the peak,
leaks, steps (analysis); the log as a table of events (export); device memory used
inefficiently (device_uses)."""
