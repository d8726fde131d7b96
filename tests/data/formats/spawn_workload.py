"""Runs workload.py as a child process, so py-spy --subprocesses records process frames."""

import os
import subprocess
import sys

subprocess.run([sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "workload.py")], check=True)
