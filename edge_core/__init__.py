"""cyberwave-edge-core: the agent that makes a robot's computer a Cyberwave edge."""

__version__ = "0.1.0"
__all__ = ["__version__"]
