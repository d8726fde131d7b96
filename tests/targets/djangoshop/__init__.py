"""A Django app over the findings app's PostgreSQL tables (tests/targets/findings_apps.py)."""
