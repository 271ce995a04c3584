"""Benchmarks of the kit on sandbox hosts (`python -m bench`): deploy time, dropped requests."""
