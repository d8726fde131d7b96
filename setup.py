"""Only the optional C extension lives here; everything else is in pyproject.toml.

``profviz._speedups`` is built when a C compiler and Python's headers are there. It is optional:
without it (``optional=True``: a failed build is a warning, not an error) profviz runs the pure
Python versions of the same code, and ``profviz.accel.speedups`` is None.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("profviz._speedups", ["profviz/_speedups.c"], optional=True)])
