"""Runnable sample applications used by profviz demos and tests."""
