"""The dead-letter topic: publish, inspect, replay."""
