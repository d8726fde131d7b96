"""Target for tests/test_procstate.py: more CPU-bound threads than cores.

Usage: procstate_contention.py N.  Starts N threads that hash a 1 MiB buffer in a loop
(hashlib releases the GIL, so they really run in parallel), prints one JSON line
{"threads": [native_id, ...]}, then exits when stdin is closed.
"""

import hashlib
import json
import os
import sys
import threading

BUFFER = bytes(1 << 20)


def hash_forever() -> None:
    while True:
        hashlib.sha256(BUFFER).digest()


def main() -> None:
    threads = [threading.Thread(target=hash_forever, daemon=True) for _ in range(int(sys.argv[1]))]
    for thread in threads:
        thread.start()
    print(json.dumps({"threads": [thread.native_id for thread in threads]}), flush=True)
    sys.stdin.buffer.read()
    os._exit(0)


if __name__ == "__main__":
    main()
