"""The child of test_kill: tracks numbered events through a client until it is killed.

usage: kill_child.py STORE ENDPOINT FIRST

Prints `event N ID` after tracking event N, and `stored N` once every event up to N is in the
store (the client's `wait_until_stored`). Uploads run all the time (a flush every 5 events).
"""

import json
import sys

from harness import UrllibUploader, config, tm


def main():
    store, endpoint, first = sys.argv[1], sys.argv[2], int(sys.argv[3])
    client = tm.TributaryClient(
        config(endpoint, store, flush_at_events=5, flush_interval_millis=50), UrllibUploader()
    )
    number = first
    while True:
        for _ in range(7):
            event_id = client.track("numbered", json.dumps({"n": number, "pad": "x" * (number % 200)}))
            print(f"event {number} {event_id}", flush=True)
            number += 1
        client.wait_until_stored(10_000)
        print(f"stored {number - 1}", flush=True)


if __name__ == "__main__":
    main()
