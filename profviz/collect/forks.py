"""How many times this process has forked (counted in the child).

A forked child inherits none of its parent's threads, so background threads (the sampler, the
writer) compare the ``count`` they started under with the current one to know they must restart.
"""

import os

count = 0


def _count_fork() -> None:
    global count
    count += 1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_count_fork)
