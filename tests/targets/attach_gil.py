"""Target for the attach GIL test (tests/test_attach.py): three named threads.

* ``compressor``: zlib on a large buffer in a loop: C code that releases the GIL, then waits to
  take it back from the spinner;
* ``spinner``: pure-Python CPU work, holding the GIL but for the interpreter's switches;
* ``lock-waiter``: blocked on a ``threading.Lock`` the main thread holds.

Prints ``{"pid": ..., "threads": {name: native id}}`` once running; exits when stdin closes.
"""

import json
import os
import sys
import threading
import zlib


def compress_forever() -> None:
    data = bytes(range(256)) * 4096
    while True:
        zlib.compress(data, 6)


def spin() -> None:
    total = 0
    while True:
        total = (total + 1) % 1_000_003


def main() -> None:
    held = threading.Lock()
    held.acquire()
    threads = [threading.Thread(target=target, args=args, name=name, daemon=True)
               for name, target, args in (("compressor", compress_forever, ()), ("spinner", spin, ()), ("lock-waiter", held.acquire, ()))]
    for thread in threads:
        thread.start()
    print(json.dumps({"pid": os.getpid(), "threads": {thread.name: thread.native_id for thread in threads}}), flush=True)
    sys.stdin.read()


if __name__ == "__main__":
    main()
