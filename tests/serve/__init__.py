"""Tests of `mmembed serve`: the REST API, its security limits, and the page in a real headless Chromium.

A package (not loose files) so its ``conftest`` does not shadow ``tests/conftest.py``, whose ``ToyEncoder`` the
security tests import.
"""
