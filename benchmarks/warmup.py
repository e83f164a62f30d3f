"""Bring a freshly started broker and store server to the state of ones that have been running for a while,
before a run's CPU is counted: `python -m benchmarks.warmup BROKER_URL STORE_URL N`.

A central installation's broker runs for months; a fresh JVM spends its first few hundred connections
compiling its hot paths. Measured here on ActiveMQ 5.17: 128 producer-like connections (connect, send one
pointer-sized persistent message, disconnect) cost it 1.31 CPU-s on a fresh JVM, then 0.96, 0.65, 0.53 and
~0.45 once compiled. Billed to a run of 128 jobs, that start-up doubled the broker's share of the central
cost. The warm-up does what the run's clients do, on queues and keys of its own, and leaves nothing behind:

- N publishers, one after another, each connecting, sending one message and closing (like producers);
- one consumer receiving and acknowledging the N messages (like the supersink);
- N chunk-sized and N manifest-sized PUTs, N GETs, then a DELETE of them all (like producers and the
  supersink; SeaweedFS, a Go program, measured the same from its first request, but a store server may not).

Both transports get the same warm-up. Credentials and TLS settings come from the environment, as for the
run's own clients. Exit 0 when done; 1 with one line on stderr when a server refused (the run then reports
what its own clients meet).
"""

from __future__ import annotations

import os
import sys
import time

from eventindex.errors import EventIndexError
from eventindex.store import open_store
from eventindex.transport import open_consumer, open_publisher

POINTER_BYTES = 600
CHUNK_BYTES = 28_000
MANIFEST_BYTES = 1_200
RECEIVE_TIMEOUT = 10.0


def warm_broker(url: str, connections: int) -> None:
    body = os.urandom(POINTER_BYTES)
    for i in range(connections):
        with open_publisher(url) as publisher:
            publisher.send(body, {"ei-warm-up": str(i)})
    received = 0
    with open_consumer(url) as consumer:
        while received < connections:
            message = consumer.receive(RECEIVE_TIMEOUT)
            if message is None:
                raise RuntimeError(f"{received} of the {connections} warm-up messages came back")
            consumer.ack(message)
            received += 1


def warm_store(url: str, requests: int) -> None:
    store = open_store(url)
    chunk, manifest = os.urandom(CHUNK_BYTES), os.urandom(MANIFEST_BYTES)
    keys = []
    for i in range(requests):
        keys += [f"warm-up/j{i:05d}/chunk", f"warm-up/j{i:05d}/manifest"]
        store.put(keys[-2], chunk)
        store.put(keys[-1], manifest)
        store.get(keys[-2])
    store.delete(keys)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 3 or not args[2].isdigit():
        print("usage: python -m benchmarks.warmup BROKER_URL STORE_URL N", file=sys.stderr)
        return 2
    broker, store, count = args[0], args[1], int(args[2])
    started = time.monotonic()
    try:
        warm_broker(broker, count)
        warm_store(store, count)
    except (EventIndexError, RuntimeError, OSError) as exc:
        print(f"warm-up: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", file=sys.stderr)
        return 1
    print(f"warm-up: {count} connections and {3 * count} store requests in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
