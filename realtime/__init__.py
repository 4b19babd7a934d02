"""The live monitor: capture threads, windowing, scoring, server, recording."""
