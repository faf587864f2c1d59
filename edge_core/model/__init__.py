"""The pure model of the edge: what should run, computed from plain data.

Twins and assets, linkage to this edge, driver profile selection, params,
environment layering, image tags, container names and the frozen
``ContainerSpec`` with its hash. Nothing in this package does I/O: no
network, Docker, files or process environment. Callers pass every input
in, so each rule is one pure function that tests can call directly.
"""
