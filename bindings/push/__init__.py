"""Profiles pushed to the continuous-profiling backends fleets run (Grafana Pyroscope,
Parca, an OpenTelemetry Collector): a running window read by snapshots (live_view), cut
into periods (periods), encoded for the backend (backends, otlp) and uploaded off the
target's path (sender); session wires them for `-p`, `run` and the agent."""
