"""A small Flask shop with deliberate, real backend bottlenecks.

Modules:
    data      -- ``build_database``: the SQLite catalogue the app reads.
    services  -- ``SlowLogSink`` and ``ExternalService``: real loopback HTTP helpers.
    app       -- ``create_app``: the Flask application factory.
    loadgen   -- ``run_load`` and ``weighted_paths``: a bounded loopback load generator.

Run it with ``python -m profviz_shop``.
"""
