"""Target for tests/test_procstate.py: one thread per kind of wait, plus a CPU spinner.

Usage: procstate_threads.py TCP_PORT UNIX_PATH.  Connects to the test's servers, starts the
threads, prints one JSON line {"threads": {name: native_id}, "accept_port": port, "backlog_port": port} once every
thread is running, then blocks reading stdin (a pipe) and exits when it is closed.
"""

import json
import os
import select
import socket
import sys
import threading
import time

ODD_COMM = "a) b (c"


def spin() -> None:
    total = 0
    while True:
        total += 1


def sleep_forever() -> None:
    while True:
        time.sleep(1000)


def block_on_lock(lock: threading.Lock) -> None:
    lock.acquire()


def receive_forever(connection: socket.socket) -> None:
    connection.recv(1)


def select_forever(connection: socket.socket) -> None:
    wakeup, _ = os.pipe()
    select.select([connection, wakeup], [], [])


def poll_forever(connection: socket.socket) -> None:
    wakeup, _ = os.pipe()
    poller = select.poll()
    poller.register(wakeup, select.POLLIN)
    poller.register(connection, select.POLLIN)
    poller.poll()


def epoll_forever(*connections: socket.socket) -> None:
    wakeup, _ = os.pipe()
    poller = select.epoll()
    poller.register(wakeup, select.EPOLLIN)
    for connection in connections:
        poller.register(connection, select.EPOLLIN)
    poller.poll()


def accept_forever(listener: socket.socket) -> None:
    listener.accept()


def rename_and_wait(release: threading.Event) -> None:
    with open(f"/proc/self/task/{threading.get_native_id()}/comm", "w") as comm:
        comm.write(ODD_COMM)
    release.wait()


def main() -> None:
    tcp_port, unix_path = int(sys.argv[1]), sys.argv[2]
    held_lock = threading.Lock()
    held_lock.acquire()
    tcp_connection = socket.create_connection(("127.0.0.1", tcp_port))
    tcp_connection_with_timeout = socket.create_connection(("127.0.0.1", tcp_port))
    tcp_connection_with_timeout.settimeout(1000)
    unix_connection = socket.socket(socket.AF_UNIX)
    unix_connection.connect(unix_path)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    never = threading.Event()
    tcp = [socket.create_connection(("127.0.0.1", tcp_port)) for _ in range(5)]
    backlog = socket.socket()  # a server that never accepts: its connection stays silent
    backlog.bind(("127.0.0.1", 0))
    backlog.listen()
    to_backlog = socket.create_connection(backlog.getsockname())
    targets = {
        "spinner": (spin, ()),
        "sleeper": (sleep_forever, ()),
        "lock-waiter": (block_on_lock, (held_lock,)),
        "tcp-receiver": (receive_forever, (tcp_connection,)),
        "tcp-timeout-receiver": (receive_forever, (tcp_connection_with_timeout,)),
        "unix-receiver": (receive_forever, (unix_connection,)),
        "acceptor": (accept_forever, (listener,)),
        "select-receiver": (select_forever, (tcp[0],)),
        "poll-receiver": (poll_forever, (tcp[1],)),
        "epoll-receiver": (epoll_forever, (tcp[2],)),
        "epoll-pool": (epoll_forever, (tcp[3], tcp[4])),
        "epoll-two-peers": (epoll_forever, (tcp[3], to_backlog)),
        "renamed": (rename_and_wait, (never,)),
    }
    threads = {
        name: threading.Thread(target=function, args=args, name=name, daemon=True)
        for name, (function, args) in targets.items()
    }
    for thread in threads.values():
        thread.start()
    native_ids = {name: thread.native_id for name, thread in threads.items()}
    native_ids["main"] = threading.get_native_id()
    print(json.dumps({"threads": native_ids, "accept_port": listener.getsockname()[1],
                      "backlog_port": backlog.getsockname()[1]}), flush=True)
    sys.stdin.buffer.read()
    os._exit(0)


if __name__ == "__main__":
    main()
