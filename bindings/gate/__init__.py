"""The memory gate: budgets (the model and its TOML), the check of profiles against them,
the runner that captures commands, the reports (text, JSON, JUnit) and the pytest
plugin."""
