"""A small real workload for producing sample profile files: CPU in the main thread, waiting in others."""

import threading
import time

DURATION_S = 1.0


def count_primes(limit):
    found = 0
    for n in range(2, limit):
        if all(n % d for d in range(2, int(n ** 0.5) + 1)):
            found += 1
    return found


def crunch_numbers(deadline):
    while time.monotonic() < deadline:
        count_primes(20000)


def wait_for_io(deadline):
    while time.monotonic() < deadline:
        time.sleep(0.05)


def wait_on_lock(lock, deadline):
    while time.monotonic() < deadline:
        lock.acquire(timeout=0.1)


def main():
    deadline = time.monotonic() + DURATION_S
    held = threading.Lock()
    held.acquire()
    sleeper = threading.Thread(target=wait_for_io, args=(deadline,), name="io-waiter")
    locker = threading.Thread(target=wait_on_lock, args=(held, deadline), name="lock-waiter")
    sleeper.start()
    locker.start()
    crunch_numbers(deadline)
    sleeper.join()
    locker.join()


if __name__ == "__main__":
    main()
