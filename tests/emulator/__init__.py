"""The stand-in for the Cyberwave cloud: REST emulator, Mosquitto launcher, fixtures."""
