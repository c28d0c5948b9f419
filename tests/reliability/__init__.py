"""Reliability tests: Chroma server mode, resumable and concurrent indexing, hostile inputs, remote images.

A package (not loose files) so its ``conftest`` does not shadow ``tests/conftest.py``, whose ``ToyEncoder``
these tests import. ``docs/reliability.md`` maps each guarantee to the test that proves it.
"""
