package dev.tributary.mobile

import com.sun.net.httpserver.HttpServer
import dev.tributary.mobile.ffi.ClientConfig
import dev.tributary.mobile.ffi.ClientStats
import dev.tributary.mobile.ffi.PolicyOverrides
import dev.tributary.mobile.ffi.TributaryClient
import org.json.JSONArray
import org.json.JSONObject
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Assumptions.assumeTrue
import org.junit.jupiter.api.DynamicTest
import org.junit.jupiter.api.TestFactory
import java.io.File
import java.net.InetSocketAddress
import java.nio.file.Files
import java.util.zip.GZIPInputStream

/**
 * The conformance suite (`tests/conformance/` in the repository) through the Kotlin bindings on
 * the JVM: one dynamic test per scenario file. A client of the test build
 * (`TributaryClient.withPolicy`, real clock) with the scenario's policy and the package's
 * [HttpUploader] posts to a scripted endpoint on 127.0.0.1 (the JDK's `HttpServer`) that answers
 * each request with the scenario's next status. The checks are tests/conformance/scenario.rs's
 * (README "Expectations"); upper bounds on gaps are not checked on a real clock. A scenario whose
 * preset gives a policy the mobile binding cannot have is skipped with the reason.
 */
class ConformanceTest {
    private val conformance = File(System.getProperty("user.dir"), "../../tests/conformance").canonicalFile
    private val presets = JSONObject(File(conformance, "presets.json").readText())

    private data class Request(val ids: List<String>, val names: List<String>, val atMillis: Double, val status: Int)

    @TestFactory
    fun scenarios(): List<DynamicTest> {
        val files = File(conformance, "scenarios").listFiles { file -> file.name.endsWith(".json") }!!.sortedBy { it.name }
        assertTrue(files.isNotEmpty(), "no scenario files in $conformance/scenarios")
        return files.map { file -> DynamicTest.dynamicTest(file.name) { run(file.name, JSONObject(file.readText())) } }
    }

    /** Why this binding cannot run the scenario, or null (see the Python runner's `unsupported`). */
    private fun unsupported(scenario: JSONObject): String? {
        val policy = scenario.getJSONObject("policy")
        val preset = policy.getString("preset")
        if (!presets.has(preset) || preset == "comment") return "unknown preset '$preset'"
        val wanted = presets.getJSONObject(preset)
        val ours = presets.getJSONObject(PLATFORM_PRESET)
        val differ = wanted.keySet().filter { field -> !policy.has(field) && wanted.get(field) != ours.get(field) }.sorted()
        if (differ.isEmpty()) return null
        return "preset '$preset' differs from '$PLATFORM_PRESET' in ${differ.joinToString()}, which the scenario leaves to the preset"
    }

    private fun run(file: String, scenario: JSONObject) {
        val unknown = (scenario.keySet() - SCENARIO_KEYS) + (scenario.getJSONObject("expect").keySet() - EXPECT_KEYS) +
            (scenario.getJSONObject("policy").keySet() - POLICY_FIELDS - "preset")
        assertTrue(unknown.isEmpty(), "$file: fields this runner does not know: $unknown")
        unsupported(scenario)?.let { reason ->
            println("conformance (kotlin): skipping $file: $reason")
            assumeTrue(false, reason)
        }

        val answers = scenario.optJSONArray("endpoint") ?: JSONArray()
        val then = scenario.optJSONObject("then") ?: JSONObject().put("status", 200)
        val requests = mutableListOf<Request>()
        var started = System.nanoTime()
        val server = HttpServer.create(InetSocketAddress("127.0.0.1", 0), 0)
        server.createContext("/v1/batch") { exchange ->
            val raw = exchange.requestBody.readBytes()
            val body = if (exchange.requestHeaders.getFirst("Content-Encoding") == "gzip") {
                GZIPInputStream(raw.inputStream()).readBytes()
            } else {
                raw
            }
            val batch = JSONObject(String(body, Charsets.UTF_8)).getJSONArray("batch")
            val answer = synchronized(requests) {
                val answer = if (requests.size < answers.length()) answers.getJSONObject(requests.size) else then
                requests += Request(
                    ids = (0 until batch.length()).map { batch.getJSONObject(it).getString("id") },
                    names = (0 until batch.length()).map { batch.getJSONObject(it).getString("name") },
                    atMillis = (System.nanoTime() - started) / 1e6,
                    status = answer.getInt("status"),
                )
                answer
            }
            val status = answer.getInt("status")
            val reply = if (status in 200..299) {
                JSONObject().put("accepted", batch.length()).put("rejected", JSONArray())
            } else {
                JSONObject().put("error", JSONObject().put("code", "scripted").put("message", "scripted answer $status"))
            }.toString().toByteArray()
            exchange.responseHeaders.add("Content-Type", "application/json")
            if (answer.has("retry_after_s")) exchange.responseHeaders.add("Retry-After", answer.get("retry_after_s").toString())
            exchange.sendResponseHeaders(status, reply.size.toLong())
            exchange.responseBody.use { it.write(reply) }
        }
        server.executor = java.util.concurrent.Executors.newCachedThreadPool()
        server.start()

        val folder = Files.createTempDirectory("tributary-conformance-kotlin-").toFile()
        val policy = scenario.getJSONObject("policy")
        fun count(field: String) = if (policy.has(field)) policy.getLong(field).toUInt() else null
        fun millis(field: String) = if (policy.has(field)) policy.getLong(field).toULong() else null
        val overrides = PolicyOverrides(
            flushAtEvents = count("flush_at_events"),
            flushIntervalMillis = millis("flush_interval_ms"),
            maxBatchEvents = count("max_batch_events"),
            maxBatchBytes = count("max_batch_bytes"),
            backoffBaseMillis = millis("backoff_base_ms"),
            backoffCapMillis = millis("backoff_cap_ms"),
            pausedDelayMillis = millis("paused_delay_ms"),
            giveUpAgeMillis = millis("give_up_age_ms"),
            capacityEvents = count("capacity_events"),
            capacityBytes = count("capacity_bytes"),
            maxConcurrentUploads = count("max_concurrent_uploads"),
        )
        val config = ClientConfig(
            writeKey = "conformance-key",
            endpoint = "http://127.0.0.1:${server.address.port}",
            storePath = File(folder, "events.db").path,
            source = "android",
            contextJson = JSONObject(PlatformContext.jvm()).toString(),
        )
        val counters: Map<String, Long>
        val client = TributaryClient.withPolicy(config, HttpUploader(), null, overrides)
        try {
            started = System.nanoTime()
            var tracked = 0
            val actions = scenario.getJSONArray("actions")
            for (index in 0 until actions.length()) {
                val action = actions.get(index)
                when {
                    action == "flush" -> client.flush()
                    action is JSONObject && action.has("track") -> {
                        val track = action.getJSONObject("track")
                        val pad = track.optInt("pad_bytes", 0)
                        val data = if (pad > 0) JSONObject().put("pad", "x".repeat(pad)).toString() else "{}"
                        repeat(track.getInt("count")) { client.track("e-${tracked++}", data) }
                    }
                    action is JSONObject && action.has("wait") -> Thread.sleep(action.getJSONObject("wait").getLong("ms"))
                    else -> error("$file: unknown action $action")
                }
            }
            // Until the queue has been empty for 100 ms (30 s at most).
            val deadline = System.nanoTime() + 30_000_000_000L
            var emptySince: Long? = null
            while (System.nanoTime() < deadline) {
                if (client.stats().queued == 0UL) {
                    val since = emptySince ?: System.nanoTime().also { emptySince = it }
                    if (System.nanoTime() - since >= 100_000_000L) break
                } else {
                    emptySince = null
                }
                Thread.sleep(10)
            }
            counters = counterMap(client.stats())
        } finally {
            client.shutdown()
            client.close()
            server.stop(0)
            (server.executor as java.util.concurrent.ExecutorService).shutdownNow()
            folder.deleteRecursively()
        }
        check(file, scenario, synchronized(requests) { requests.toList() }, counters)
    }

    private fun counterMap(stats: ClientStats): Map<String, Long> = mapOf(
        "delivered" to stats.delivered.toLong(),
        "retried" to stats.retried.toLong(),
        "evicted" to stats.evicted.toLong(),
        "dropped_permanent" to stats.droppedPermanent.toLong(),
        "dropped_too_large" to stats.droppedTooLarge.toLong(),
        "dropped_expired" to stats.droppedExpired.toLong(),
        "dropped_rejected" to stats.droppedRejected.toLong(),
        "dropped_invalid" to stats.droppedInvalid.toLong(),
        "queued" to stats.queued.toLong(),
    )

    /** scenario.rs's `check` on a real clock (no upper bounds on gaps). */
    private fun check(file: String, scenario: JSONObject, requests: List<Request>, counters: Map<String, Long>) {
        val expect = scenario.getJSONObject("expect")
        val counts = requests.map { it.ids.size }
        val context = "$file (${scenario.getString("name")}): requests $counts, counters $counters"
        expect.optJSONArray("requests")?.let { wanted ->
            assertEquals((0 until wanted.length()).map { wanted.getInt(it) }, counts, context)
        }
        if (expect.has("min_requests")) {
            assertTrue(counts.size >= expect.getInt("min_requests"), "at least ${expect.getInt("min_requests")} requests: $context")
        }
        expect.optJSONArray("first_names")?.let { wanted ->
            assertTrue(requests.isNotEmpty(), context)
            assertEquals((0 until wanted.length()).map { wanted.getString(it) }, requests[0].names, context)
        }
        expect.optJSONObject("request_at_least_ms")?.let { bounds ->
            for (index in bounds.keySet()) {
                val request = requests.getOrNull(index.toInt()) ?: error("request $index: $context")
                assertTrue(request.atMillis >= bounds.getLong(index), "request $index at ${request.atMillis} ms: $context")
            }
        }
        val accepted = requests.filter { it.status in 200..299 }
        if (expect.optBoolean("accepted_in_order")) {
            val order = accepted.flatMap { it.names }.map { it.removePrefix("e-").toInt() }
            assertTrue(order.zipWithNext().all { (a, b) -> a < b }, "accepted in tracking order: $order: $context")
        }
        if (expect.optBoolean("same_ids_in_every_request")) {
            for (request in requests) assertEquals(requests[0].ids, request.ids, context)
        }
        if (expect.optBoolean("accepted_once")) {
            val seen = HashSet<String>()
            for (id in accepted.flatMap { it.ids }) assertTrue(seen.add(id), "$id accepted twice: $context")
        }
        expect.optJSONObject("gap_before_at_least_ms")?.let { bounds ->
            for (key in bounds.keySet()) {
                val index = key.toInt()
                assertTrue(index >= 1 && index < requests.size, "request $index: $context")
                val gap = maxOf(0.0, requests[index].atMillis - requests[index - 1].atMillis)
                assertTrue(gap >= bounds.getLong(key), "gap before request $index is $gap ms: $context")
            }
        }
        // gap_before_at_most_ms: only on a virtual clock (README), and this runner's clock is real.
        expect.optJSONObject("counters")?.let { wanted ->
            for (name in wanted.keySet()) {
                val actual = counters[name] ?: error("unknown counter $name: $context")
                assertEquals(wanted.getLong(name), actual, "counter $name: $context")
            }
        }
    }

    private companion object {
        const val PLATFORM_PRESET = "mobile"
        val POLICY_FIELDS = setOf(
            "flush_at_events", "flush_interval_ms", "max_batch_events", "max_batch_bytes", "backoff_base_ms",
            "backoff_cap_ms", "paused_delay_ms", "give_up_age_ms", "capacity_events", "capacity_bytes",
            "max_concurrent_uploads",
        )
        val SCENARIO_KEYS = setOf("name", "rule", "policy", "endpoint", "then", "actions", "expect")
        val EXPECT_KEYS = setOf(
            "requests", "min_requests", "first_names", "same_ids_in_every_request", "accepted_once",
            "accepted_in_order", "request_at_least_ms", "gap_before_at_least_ms", "gap_before_at_most_ms", "counters",
        )
    }
}
