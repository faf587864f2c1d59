"""Helpers shared by the tests: local images, a local registry, free ports."""
