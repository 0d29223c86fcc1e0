"""The conformance suite (tests/conformance/ in the repository) through the Python bindings.

Every scenario file runs as its own test: a client of the test build (`with_policy`, real
clock) with the scenario's policy, its urllib uploader, and a scripted endpoint on 127.0.0.1
(`http.server`) that answers each request with the scenario's next status. The checks are those
of tests/conformance/scenario.rs (README "Expectations"); upper bounds on gaps are not checked
on a real clock. A scenario whose preset gives a policy the mobile binding cannot have is
skipped with the reason (see `unsupported`).
"""

import gzip
import json
import os
import shutil
import tempfile
import threading
import time
import unittest
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from harness import UrllibUploader, config, tm

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..")
CONFORMANCE = os.path.join(REPO, "tests", "conformance")
PLATFORM_PRESET = "mobile"

# The policy fields a scenario may set, and the PolicyOverrides field each becomes.
POLICY_FIELDS = {
    "flush_at_events": "flush_at_events",
    "flush_interval_ms": "flush_interval_millis",
    "max_batch_events": "max_batch_events",
    "max_batch_bytes": "max_batch_bytes",
    "backoff_base_ms": "backoff_base_millis",
    "backoff_cap_ms": "backoff_cap_millis",
    "paused_delay_ms": "paused_delay_millis",
    "give_up_age_ms": "give_up_age_millis",
    "capacity_events": "capacity_events",
    "capacity_bytes": "capacity_bytes",
    "max_concurrent_uploads": "max_concurrent_uploads",
}
SCENARIO_KEYS = {"name", "rule", "policy", "endpoint", "then", "actions", "expect"}
EXPECT_KEYS = {
    "requests", "min_requests", "first_names", "same_ids_in_every_request", "accepted_once",
    "accepted_in_order", "request_at_least_ms", "gap_before_at_least_ms",
    "gap_before_at_most_ms", "counters",
}
COUNTERS = [
    "delivered", "retried", "evicted", "dropped_permanent", "dropped_too_large",
    "dropped_expired", "dropped_rejected", "dropped_invalid", "queued",
]


def load_json(path):
    with open(path) as file:
        return json.load(file)


PRESETS = {name: policy for name, policy in load_json(os.path.join(CONFORMANCE, "presets.json")).items()
           if name != "comment"}


def scenario_files():
    folder = os.path.join(CONFORMANCE, "scenarios")
    return sorted(name for name in os.listdir(folder) if name.endswith(".json"))


def unsupported(scenario):
    """Why this binding cannot run the scenario, or None: the policy the scenario asks for
    (its preset and changes) must be the one the mobile preset with the same changes gives."""
    policy = scenario["policy"]
    preset = policy["preset"]
    if preset not in PRESETS:
        return f"unknown preset {preset!r}"
    wanted = dict(PRESETS[preset], **{k: v for k, v in policy.items() if k != "preset"})
    ours = dict(PRESETS[PLATFORM_PRESET], **{k: v for k, v in policy.items() if k != "preset"})
    differ = sorted(field for field in wanted if wanted[field] != ours[field])
    if differ:
        return (f"preset {preset!r} differs from {PLATFORM_PRESET!r} in {', '.join(differ)}, "
                "which the scenario leaves to the preset")
    return None


class ScriptedEndpoint:
    """POST /v1/batch on 127.0.0.1: answers request i with the scenario's i-th answer (then
    `then`), and records each request's ids, names, time since `start()` and status."""

    def __init__(self, scenario):
        self.answers = scenario.get("endpoint", [])
        self.then = scenario.get("then", {"status": 200})
        self.requests = []
        self.lock = threading.Lock()
        self.started = time.monotonic()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                batch = json.loads(body)["batch"]
                with endpoint.lock:
                    index = len(endpoint.requests)
                    answer = endpoint.answers[index] if index < len(endpoint.answers) else endpoint.then
                    endpoint.requests.append({
                        "ids": [event["id"] for event in batch],
                        "names": [event["name"] for event in batch],
                        "at_ms": (time.monotonic() - endpoint.started) * 1000,
                        "status": answer["status"],
                    })
                status = answer["status"]
                if 200 <= status < 300:
                    reply = {"accepted": len(batch), "rejected": []}
                else:
                    reply = {"error": {"code": "scripted", "message": f"scripted answer {status}"}}
                reply = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                if "retry_after_s" in answer:
                    self.send_header("Retry-After", str(answer["retry_after_s"]))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def start(self):
        self.started = time.monotonic()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def counter_map(stats):
    return {name: getattr(stats, name) for name in COUNTERS}


def check(test, file, scenario, requests, counters):
    """scenario.rs's `check` on a real clock (no upper bounds on gaps)."""
    expect = scenario["expect"]
    counts = [len(request["ids"]) for request in requests]
    context = f"{file} ({scenario['name']}): requests {counts}, counters {counters}"
    if "requests" in expect:
        test.assertEqual(counts, expect["requests"], context)
    if "min_requests" in expect:
        test.assertGreaterEqual(len(counts), expect["min_requests"], context)
    if "first_names" in expect:
        test.assertTrue(requests, context)
        test.assertEqual(requests[0]["names"], expect["first_names"], context)
    for index, least in expect.get("request_at_least_ms", {}).items():
        test.assertLess(int(index), len(requests), context)
        at = requests[int(index)]["at_ms"]
        test.assertGreaterEqual(at, least, f"request {index} at {at:.1f} ms: {context}")
    accepted = [request for request in requests if 200 <= request["status"] < 300]
    if expect.get("accepted_in_order"):
        order = [int(name.removeprefix("e-")) for request in accepted for name in request["names"]]
        test.assertTrue(all(a < b for a, b in zip(order, order[1:])),
                        f"accepted in tracking order: {order}: {context}")
    if expect.get("same_ids_in_every_request"):
        for request in requests:
            test.assertEqual(request["ids"], requests[0]["ids"], context)
    if expect.get("accepted_once"):
        seen = set()
        for request in accepted:
            for event_id in request["ids"]:
                test.assertNotIn(event_id, seen, f"{event_id} accepted twice: {context}")
                seen.add(event_id)

    def gap(index):
        index = int(index)
        test.assertTrue(1 <= index < len(requests), f"request {index}: {context}")
        return max(0.0, requests[index]["at_ms"] - requests[index - 1]["at_ms"])

    for index, least in expect.get("gap_before_at_least_ms", {}).items():
        value = gap(index)
        test.assertGreaterEqual(value, least, f"gap before request {index} is {value:.1f} ms: {context}")
    # gap_before_at_most_ms: only on a virtual clock (README), and this runner's clock is real.
    for name, value in expect.get("counters", {}).items():
        test.assertIn(name, counters, f"unknown counter {name}: {context}")
        test.assertEqual(counters[name], value, f"counter {name}: {context}")


class ConformanceTest(unittest.TestCase):
    def run_scenario(self, file):
        scenario = load_json(os.path.join(CONFORMANCE, "scenarios", file))
        unknown = (set(scenario) - SCENARIO_KEYS) | (set(scenario["expect"]) - EXPECT_KEYS) \
            | (set(scenario["policy"]) - set(POLICY_FIELDS) - {"preset"})
        self.assertFalse(unknown, f"{file}: fields this runner does not know: {sorted(unknown)}")
        reason = unsupported(scenario)
        if reason:
            print(f"conformance (python): skipping {file}: {reason}")
            self.skipTest(reason)

        folder = tempfile.mkdtemp(prefix="tributary-conformance-py-")
        endpoint = ScriptedEndpoint(scenario)
        overrides = tm.PolicyOverrides(**{
            POLICY_FIELDS[field]: value
            for field, value in scenario["policy"].items() if field != "preset"
        })
        client = tm.TributaryClient.with_policy(
            config(endpoint.url, os.path.join(folder, "events.db")), UrllibUploader(), None,
            overrides)
        try:
            endpoint.start()
            tracked = 0
            for action in scenario["actions"]:
                if action == "flush":
                    client.flush()
                elif "track" in action:
                    pad = action["track"].get("pad_bytes", 0)
                    data = json.dumps({"pad": "x" * pad} if pad else {})
                    for _ in range(action["track"]["count"]):
                        client.track(f"e-{tracked}", data)
                        tracked += 1
                elif "wait" in action:
                    time.sleep(action["wait"]["ms"] / 1000)
                else:
                    self.fail(f"{file}: unknown action {action!r}")
            # Until the queue has been empty for 100 ms (30 s at most).
            deadline = time.monotonic() + 30
            empty_since = None
            while time.monotonic() < deadline:
                if client.stats().queued == 0:
                    empty_since = empty_since or time.monotonic()
                    if time.monotonic() - empty_since >= 0.1:
                        break
                else:
                    empty_since = None
                time.sleep(0.01)
            counters = counter_map(client.stats())
        finally:
            client.shutdown()
            endpoint.stop()
            shutil.rmtree(folder, ignore_errors=True)
        with endpoint.lock:
            requests = list(endpoint.requests)
        check(self, file, scenario, requests, counters)


def add_scenario_tests():
    for file in scenario_files():
        name = "test_" + file.removesuffix(".json").replace("-", "_")
        setattr(ConformanceTest, name, lambda self, file=file: self.run_scenario(file))


add_scenario_tests()

if __name__ == "__main__":
    unittest.main()
