"""Target for measuring ProcStateReader cost: N threads that keep blocking and waking up.

Usage: procstate_idle_threads.py N (total threads, main included).  Worker i alternates sleeping 5 ms, waiting 5 ms on a
lock and blocking on a pipe read that a feeder thread satisfies every 10 ms, so wait reasons
change between reads.  Prints {"threads": [...]} and exits when stdin is closed.
"""

import json
import os
import sys
import threading
import time


def churn(index: int, read_end: int) -> None:
    lock = threading.Lock()
    lock.acquire()
    while True:
        kind = index % 3
        if kind == 0:
            time.sleep(0.005)
        elif kind == 1:
            lock.acquire(timeout=0.005)
        else:
            os.read(read_end, 1)


def feed(write_end: int, readers: int) -> None:
    while True:
        os.write(write_end, b"x" * readers)
        time.sleep(0.01)


def main() -> None:
    count = int(sys.argv[1])
    read_end, write_end = os.pipe()
    threads = [threading.Thread(target=churn, args=(index, read_end), daemon=True) for index in range(count - 2)]
    pipe_readers = sum(1 for index in range(count - 2) if index % 3 == 2)
    threads.append(threading.Thread(target=feed, args=(write_end, pipe_readers), daemon=True))
    for thread in threads:
        thread.start()
    print(json.dumps({"threads": [thread.native_id for thread in threads]}), flush=True)
    sys.stdin.buffer.read()
    os._exit(0)


if __name__ == "__main__":
    main()
