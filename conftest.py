"""Registers the iopt-hil pytest plugin for this repository's tests.

An installed harness (pip install, editable or not) also registers it through its `pytest11`
entry point, which is named "harness.plugin" after the module: pytest then finds a plugin of that
name already registered and skips this line, so the plugin is never registered twice. Without
an installed harness (PYTHONPATH=checkout, or PYTEST_DISABLE_PLUGIN_AUTOLOAD) this line does it.
"""
pytest_plugins = ["harness.plugin"]
