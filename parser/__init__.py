"""The .heap pipeline: read -> symbolize -> aggregate -> render."""
