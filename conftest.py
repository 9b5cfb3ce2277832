"""Registers the iopt-hil pytest plugin for this repository's tests."""
pytest_plugins = ["harness.plugin"]
