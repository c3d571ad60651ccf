"""Faithful test doubles shared by the test-suite and local development."""
