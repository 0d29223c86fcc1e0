"""The client through the Python bindings, against a real `tributary serve`."""

import json
import os
import shutil
import tempfile
import threading
import time
import unittest

from harness import Server, UrllibUploader, config, queued_in_store, tm

# Nothing listens on port 1 of 127.0.0.1: uploads there fail at connect.
DEAD_ENDPOINT = "http://127.0.0.1:1"
START = 1_795_773_600_000


class ClientTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = Server()

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        shutil.rmtree(cls.server.dir, ignore_errors=True)

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="tributary-mobile-py-")
        self.store = os.path.join(self.dir, "nested", "events.db")

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def open(self, endpoint=None, clock=None, **overrides):
        settings = config(endpoint or self.server.endpoint, self.store, **overrides)
        uploader = UrllibUploader()
        if clock is None:
            client = tm.TributaryClient(settings, uploader)
        else:
            client = tm.TributaryClient.with_clock(settings, uploader, clock)
        self.addCleanup(client.shutdown)
        return client, uploader

    def test_events_reach_the_server_with_identity_and_context(self):
        client, _ = self.open()
        anonymous_id = client.anonymous_id()
        ids = [client.track("login", json.dumps({"i": i})) for i in range(30)]
        ids.append(client.identify("user-42", json.dumps({"plan": "pro"})))
        ids.append(client.screen("Settings", "{}"))
        ids.append(client.track("purchase", ""))
        client.flush_blocking(20_000)
        archived = self.server.wait_archived(ids)
        for event_id in ids:
            self.assertEqual(len(archived.get(event_id, [])), 1, event_id)
        first, identify, screen, last = (archived[ids[i]][0] for i in (0, 30, 31, 32))
        self.assertEqual(first["name"], "login")
        self.assertEqual(first["data"], {"i": 0})
        self.assertEqual(first["source"], "python")
        self.assertEqual(first["anonymous_id"], anonymous_id)
        self.assertEqual(first["context"]["app"], {"name": "binding-tests"})
        self.assertEqual(first["context"]["library"]["name"], "tributary-mobile")
        self.assertNotIn("user_id", first)
        self.assertEqual(identify["name"], "$identify")
        self.assertEqual(identify["user_id"], "user-42")
        self.assertEqual(screen["name"], "$screen")
        self.assertEqual(screen["data"]["name"], "Settings")
        self.assertEqual(last["user_id"], "user-42")
        self.assertEqual(last["context"]["traits"], {"plan": "pro"})
        stats = client.stats()
        self.assertEqual(stats.delivered, 33)
        self.assertEqual(stats.queued, 0)

    def test_a_restart_mid_queue_loses_nothing_and_keeps_the_backoff(self):
        clock = tm.ManualClock(START)
        # No automatic flush: the only upload is flush_blocking's (the clock stands still, so a
        # backoff started by an earlier upload would never end).
        client, _ = self.open(endpoint=DEAD_ENDPOINT, clock=clock, flush_at_events=1000)
        ids = [client.track("queued", json.dumps({"i": i})) for i in range(25)]
        with self.assertRaises(tm.TributaryError.Network):
            client.flush_blocking(20_000)
        failed = client.stats()
        self.assertGreaterEqual(failed.consecutive_failures, 1)
        client.shutdown()
        self.assertEqual(sorted(queued_in_store(self.store)), sorted(ids))

        # The same store, now pointed at a live server: the backoff saved before the restart
        # still holds (nothing is sent before it ends), then everything goes, once.
        reopened, uploader = self.open(clock=clock)
        stats = reopened.stats()
        self.assertEqual(stats.restored, 25)
        self.assertEqual(stats.consecutive_failures, failed.consecutive_failures)
        # Either it waits out the timeout or, when the backoff ends after it, says so at once.
        with self.assertRaises((tm.TributaryError.Timeout, tm.TributaryError.Network)):
            reopened.flush_blocking(300)
        self.assertEqual(uploader.requests, 0)
        clock.advance(301_000)
        reopened.flush_blocking(20_000)
        archived = self.server.wait_archived(ids)
        for event_id in ids:
            self.assertEqual(len(archived.get(event_id, [])), 1, event_id)
        self.assertEqual(reopened.stats().consecutive_failures, 0)

    def test_many_threads_at_once(self):
        client, _ = self.open()
        results = {}

        def produce(thread):
            results[thread] = [
                client.track("thread_event", json.dumps({"thread": thread, "i": i})) for i in range(150)
            ]

        threads = [threading.Thread(target=produce, args=(t,)) for t in range(8)]
        flusher = threading.Thread(target=lambda: [client.flush() for _ in range(50)])
        for thread in threads + [flusher]:
            thread.start()
        for thread in threads + [flusher]:
            thread.join()
        ids = [event_id for produced in results.values() for event_id in produced]
        self.assertEqual(len(set(ids)), 8 * 150)
        client.flush_blocking(30_000)
        archived = self.server.wait_archived(ids)
        for event_id in ids:
            self.assertEqual(len(archived.get(event_id, [])), 1, event_id)
        # Each thread's events keep their order (UUIDv7 ids and timestamps rise).
        for thread, produced in results.items():
            seen = [archived[i][0]["data"]["i"] for i in produced]
            self.assertEqual(seen, list(range(150)))

    def test_the_flush_interval_runs_on_the_injected_clock(self):
        clock = tm.ManualClock(START)
        client, uploader = self.open(clock=clock, flush_at_events=1000)
        event_id = client.track("waiting", "{}")
        client.wait_until_stored(5_000)
        time.sleep(0.3)
        self.assertEqual(uploader.requests, 0)
        clock.advance(10_000)
        archived = self.server.wait_archived([event_id], timeout=10)
        self.assertIn(event_id, archived)
        # The event's time is the clock's (kept as `original_timestamp` by the ingest's skew
        # correction, since the batch's `sent_at` is on the same clock).
        self.assertTrue(archived[event_id][0]["original_timestamp"].startswith("2026-11-27T10:00:00"))

    def test_opt_out_reset_and_lifecycle_events_persist(self):
        client, _ = self.open()
        client.record_app_opened("1.0.0", "100", False)
        anonymous_id = client.anonymous_id()
        client.identify("user-7", "{}")
        client.set_opted_out(True)
        self.assertIsNone(client.track("ignored", "{}"))
        self.assertEqual(client.stats().ignored_opted_out, 1)
        client.flush_blocking(20_000)
        client.shutdown()

        reopened, _ = self.open()
        self.assertTrue(reopened.is_opted_out())
        self.assertEqual(reopened.anonymous_id(), anonymous_id)
        self.assertEqual(reopened.user_id(), "user-7")
        reopened.set_opted_out(False)
        reopened.record_app_opened("1.0.0", "100", False)
        reopened.record_app_opened("1.1.0", "110", False)
        reopened.record_app_opened("1.1.0", "110", True)
        reopened.record_app_backgrounded()
        reopened.reset()
        self.assertNotEqual(reopened.anonymous_id(), anonymous_id)
        self.assertIsNone(reopened.user_id())
        after_reset = reopened.track("after_reset", "{}")
        reopened.flush_blocking(20_000)

        archived = self.server.wait_archived([after_reset])
        mine = sorted(
            (event for events in archived.values() for event in events
             if event["anonymous_id"] == anonymous_id and event["name"].startswith("Application")),
            key=lambda event: event["timestamp"] + event["id"],
        )
        names = [event["name"] for event in mine]
        self.assertEqual(names.count("Application Installed"), 1)
        self.assertEqual(names.count("Application Updated"), 1)
        self.assertEqual(names.count("Application Opened"), 4)
        self.assertEqual(names.count("Application Backgrounded"), 1)
        updated = next(event for event in mine if event["name"] == "Application Updated")
        self.assertEqual(updated["data"], {
            "version": "1.1.0", "build": "110", "previous_version": "1.0.0", "previous_build": "100",
        })
        self.assertNotIn("ignored", [event["name"] for events in archived.values() for event in events
                                     if event["anonymous_id"] == anonymous_id])
        self.assertNotEqual(archived[after_reset][0]["anonymous_id"], anonymous_id)
        self.assertNotIn("user_id", archived[after_reset][0])

    def test_bad_input_is_refused_with_the_field_and_loses_nothing_beside_it(self):
        client, _ = self.open()
        good = client.track("good", "{}")
        cases = [
            (lambda: client.track("", "{}"), "name"),
            (lambda: client.track("x" * 129, "{}"), "name"),
            (lambda: client.track("bad\u0007", "{}"), "name"),
            (lambda: client.track("ok", "[1, 2]"), "properties_json: must be a JSON object"),
            (lambda: client.track("ok", '{"email": alice@example.com}'), "properties_json: not valid JSON"),
            (lambda: client.track("$secret", "{}"), "name"),
            (lambda: client.identify("u" * 300, "{}"), "user_id"),
        ]
        for call, expected in cases:
            with self.assertRaises(tm.TributaryError.InvalidInput) as raised:
                call()
            self.assertIn(expected, str(raised.exception))
            self.assertNotIn("alice", str(raised.exception))
        with self.assertRaises(tm.TributaryError.InvalidInput):
            tm.TributaryClient(config("not a url", self.store), UrllibUploader())
        also_good = client.track("also_good", "{}")
        client.flush_blocking(20_000)
        archived = self.server.wait_archived([good, also_good])
        self.assertIn(good, archived)
        self.assertIn(also_good, archived)
        self.assertEqual(client.stats().delivered, 2)

    def test_plain_bodies_when_gzip_is_off(self):
        client, _ = self.open(gzip=False)
        event_id = client.track("plain", "{}")
        client.flush_blocking(20_000)
        self.assertIn(event_id, self.server.wait_archived([event_id]))

    def test_a_refused_write_key_pauses_and_keeps_everything(self):
        client, _ = self.open(write_key="wrong-key")
        heard = []

        class Recorder(tm.DeliveryListener):
            def on_event(self, event):
                heard.append(event)

        client.set_listener(Recorder())
        event_id = client.track("kept", "{}")
        with self.assertRaises(tm.TributaryError.Network) as raised:
            client.flush_blocking(20_000)
        self.assertIn("401", str(raised.exception))
        stats = client.stats()
        self.assertTrue(stats.paused)
        self.assertEqual(stats.queued, 1)
        deadline = time.time() + 10
        while not heard and time.time() < deadline:
            time.sleep(0.01)
        self.assertTrue(heard and heard[0].is_paused() and heard[0].status == 401, heard)
        client.shutdown()
        self.assertEqual(queued_in_store(self.store), [event_id])

    def test_a_throwing_uploader_counts_as_a_connection_failure(self):
        class Throwing(tm.Uploader):
            def upload(self, request):
                raise RuntimeError("boom")

        client = tm.TributaryClient(config(self.server.endpoint, self.store), Throwing())
        self.addCleanup(client.shutdown)
        client.track("kept", "{}")
        with self.assertRaises(tm.TributaryError.Network) as raised:
            client.flush_blocking(20_000)
        self.assertIn("threw", str(raised.exception))
        self.assertEqual(client.stats().queued, 1)

    def test_calls_after_close_fail_with_closed(self):
        client, _ = self.open()
        client.shutdown()
        with self.assertRaises(tm.TributaryError.Closed):
            client.track("late", "{}")


if __name__ == "__main__":
    unittest.main()
