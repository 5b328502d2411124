"""The hostile-input suite: raw-socket attacks on a real coordinator.

The harness is in helpers.py, the fixtures every module shares in conftest.py.
"""
