"""Every request timed, the slow ones profiled: one framework-neutral engine, a small adapter per framework.

``recorder.py`` is the engine (begin/finish of a request, the sampler, deep profiles, the queue
to the writer); ``batches.py`` and ``capture.py`` are what its writer thread does (tail capture,
profiles, store batches); ``options.py`` holds every option once. Adapters: ``wsgi.py`` (any WSGI
app), ``flask.py``, ``django.py``; an ASGI adapter belongs beside them. Their public names are
``profviz.wsgi``, ``profviz.flask`` and ``profviz.django``.
"""
