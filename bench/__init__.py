"""Benchmarks of cyberwave-edge-core, run on real parts (see bench/README.md)."""
