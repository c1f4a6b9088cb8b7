"""Measure the other parts: retrieval now, answers and routes later."""
