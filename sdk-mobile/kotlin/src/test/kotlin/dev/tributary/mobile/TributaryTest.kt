package dev.tributary.mobile

import dev.tributary.mobile.ffi.DeliveryEvent
import dev.tributary.mobile.ffi.ManualClock
import dev.tributary.mobile.ffi.TributaryClient
import dev.tributary.mobile.ffi.TributaryException
import dev.tributary.mobile.ffi.UploadRequest
import dev.tributary.mobile.ffi.UploadResponse
import dev.tributary.mobile.ffi.Uploader
import org.junit.jupiter.api.AfterAll
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertFalse
import org.junit.jupiter.api.Assertions.assertNotEquals
import org.junit.jupiter.api.Assertions.assertNull
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.BeforeAll
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.TestInstance
import org.junit.jupiter.api.assertThrows
import org.junit.jupiter.api.io.TempDir
import java.io.File
import java.time.Duration
import java.util.concurrent.ConcurrentHashMap
import java.util.concurrent.CountDownLatch
import java.util.concurrent.Executors
import java.util.concurrent.TimeUnit
import java.util.concurrent.atomic.AtomicInteger

@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class TributaryTest {
    private lateinit var server: TestServer

    @BeforeAll
    fun startServer() {
        server = TestServer()
    }

    @AfterAll
    fun stopServer() {
        server.close()
    }

    private fun configuration(store: File, endpoint: String = server.endpoint, writeKey: String = "dev-write-key") =
        Configuration(
            writeKey = writeKey,
            endpoint = endpoint,
            storeFile = store,
            source = "android",
            context = PlatformContext.jvm() + mapOf("app" to mapOf("name" to "kotlin-tests", "version" to "1.0.0")),
        )

    /** Counts the requests of the real uploader. */
    private class CountingUploader : Uploader {
        val requests = AtomicInteger()
        private val http = HttpUploader()
        override fun upload(request: UploadRequest): UploadResponse {
            requests.incrementAndGet()
            return http.upload(request)
        }
    }

    @Test
    fun `events reach the server with properties identity and context`(@TempDir dir: File) {
        Tributary.open(configuration(File(dir, "a/events.db"))).use { tributary ->
            val delivered = AtomicInteger()
            tributary.onDelivery { event -> if (event is DeliveryEvent.Delivered) delivered.addAndGet(event.count.toInt()) }
            val anonymousId = tributary.anonymousId
            val first = tributary.track(
                "Order Completed",
                mapOf(
                    "total" to 42.5, "items" to listOf("sku-1", "sku-2"), "coupon" to null,
                    "gift" to false, "shipping" to mapOf("days" to 3), "quote" to "say \"hi\"\n",
                ),
            )!!
            val identify = tributary.identify("user-42", mapOf("plan" to "pro"))!!
            val screen = tributary.screen("Checkout")!!
            val last = tributary.track("Signed Out")!!
            tributary.flushBlocking()
            val archived = server.waitArchived(listOf(first, identify, screen, last))
            for (id in listOf(first, identify, screen, last)) assertEquals(1, archived[id]?.size, id)

            val order = archived.getValue(first).single()
            assertEquals("Order Completed", order.getString("name"))
            val data = order.getJSONObject("data")
            assertEquals(42.5, data.getDouble("total"))
            assertEquals(listOf("sku-1", "sku-2"), data.getJSONArray("items").toList())
            assertTrue(data.isNull("coupon"))
            assertEquals(false, data.getBoolean("gift"))
            assertEquals(3, data.getJSONObject("shipping").getInt("days"))
            assertEquals("say \"hi\"\n", data.getString("quote"))
            assertEquals("android", order.getString("source"))
            assertEquals(anonymousId, order.getString("anonymous_id"))
            val context = order.getJSONObject("context")
            assertEquals("kotlin-tests", context.getJSONObject("app").getString("name"))
            assertEquals("tributary-kotlin", context.getJSONObject("library").getString("name"))
            assertTrue(context.has("locale") && context.has("timezone") && context.has("os"))

            assertEquals("user-42", archived.getValue(identify).single().getString("user_id"))
            assertEquals("Checkout", archived.getValue(screen).single().getJSONObject("data").getString("name"))
            val signedOut = archived.getValue(last).single()
            assertEquals("user-42", signedOut.getString("user_id"))
            assertEquals("pro", signedOut.getJSONObject("context").getJSONObject("traits").getString("plan"))
            assertEquals(4uL, tributary.stats.delivered)
            val deadline = System.currentTimeMillis() + 10_000
            while (delivered.get() < 4 && System.currentTimeMillis() < deadline) Thread.sleep(10)
            assertEquals(4, delivered.get(), "the listener heard every delivery")
        }
    }

    @Test
    fun `a restart mid-queue loses nothing and keeps the backoff`(@TempDir dir: File) {
        val store = File(dir, "events.db")
        val clock = ManualClock(1_795_773_600_000uL)
        // No automatic flush: the only upload is flushBlocking's (the clock stands still, so a
        // backoff started by an earlier upload would never end).
        val down = configuration(store, endpoint = "http://127.0.0.1:1").copy(flushAt = 1000)
        val ids = Tributary(TributaryClient.withClock(down.toFfi(), HttpUploader(), clock)).use { tributary ->
            val ids = (0 until 25).map { tributary.track("queued", mapOf("i" to it))!! }
            assertThrows<TributaryException.Network> { tributary.flushBlocking() }
            assertTrue(tributary.stats.consecutiveFailures >= 1u)
            ids
        }

        val uploader = CountingUploader()
        Tributary(TributaryClient.withClock(configuration(store).toFfi(), uploader, clock)).use { tributary ->
            assertEquals(25uL, tributary.stats.restored)
            assertTrue(tributary.stats.consecutiveFailures >= 1u, "the backoff survived the restart")
            // Either it waits out the timeout or, when the backoff ends after it, says so at once.
            val waited = runCatching { tributary.flushBlocking(Duration.ofMillis(300)) }.exceptionOrNull()
            assertTrue(waited is TributaryException.Timeout || waited is TributaryException.Network, "$waited")
            assertEquals(0, uploader.requests.get())
            clock.advance(301_000uL)
            tributary.flushBlocking()
            val archived = server.waitArchived(ids)
            for (id in ids) assertEquals(1, archived[id]?.size, id)
            assertEquals(0u, tributary.stats.consecutiveFailures)
        }
    }

    @Test
    fun `many threads at once`(@TempDir dir: File) {
        Tributary.open(configuration(File(dir, "events.db"))).use { tributary ->
            val threads = 8
            val perThread = 150
            val pool = Executors.newFixedThreadPool(threads + 1)
            val start = CountDownLatch(1)
            val ids = ConcurrentHashMap<Int, List<String>>()
            for (thread in 0 until threads) {
                pool.execute {
                    start.await()
                    ids[thread] = (0 until perThread).map { tributary.track("thread_event", mapOf("thread" to thread, "i" to it))!! }
                }
            }
            pool.execute {
                start.await()
                repeat(50) { tributary.flush(); tributary.stats }
            }
            start.countDown()
            pool.shutdown()
            assertTrue(pool.awaitTermination(60, TimeUnit.SECONDS))
            val all = ids.values.flatten()
            assertEquals(threads * perThread, all.toSet().size)
            tributary.flushBlocking()
            val archived = server.waitArchived(all)
            for (id in all) assertEquals(1, archived[id]?.size, id)
            for ((_, produced) in ids) {
                assertEquals((0 until perThread).toList(), produced.map { archived.getValue(it).single().getJSONObject("data").getInt("i") })
            }
        }
    }

    @Test
    fun `lifecycle events, opt-out and reset`(@TempDir dir: File) {
        val store = File(dir, "events.db")
        val anonymousId = Tributary.open(configuration(store)).use { tributary ->
            val lifecycle = AppLifecycle(tributary, "1.0.0", "100")
            lifecycle.onForeground()
            lifecycle.onBackground()
            lifecycle.onForeground()
            lifecycle.awaitIdle()
            tributary.optedOut = true
            assertNull(tributary.track("ignored"))
            tributary.flushBlocking()
            tributary.anonymousId
        }
        Tributary.open(configuration(store)).use { tributary ->
            assertTrue(tributary.optedOut)
            assertEquals(anonymousId, tributary.anonymousId)
            tributary.optedOut = false
            val lifecycle = AppLifecycle(tributary, "1.1.0", "110")
            lifecycle.onForeground()
            lifecycle.awaitIdle()
            tributary.reset()
            assertNotEquals(anonymousId, tributary.anonymousId)
            val after = tributary.track("after_reset")!!
            tributary.flushBlocking()
            val archived = server.waitArchived(listOf(after))
            val mine = archived.values.flatten().filter { it.getString("anonymous_id") == anonymousId }
            val names = mine.map { it.getString("name") }
            assertEquals(1, names.count { it == "Application Installed" })
            assertEquals(1, names.count { it == "Application Updated" })
            assertEquals(3, names.count { it == "Application Opened" })
            assertEquals(1, names.count { it == "Application Backgrounded" })
            assertFalse("ignored" in names)
            val updated = mine.single { it.getString("name") == "Application Updated" }.getJSONObject("data")
            assertEquals("1.0.0", updated.getString("previous_version"))
            assertEquals("110", updated.getString("build"))
            val reopened = mine.filter { it.getString("name") == "Application Opened" }
            assertEquals(1, reopened.count { it.getJSONObject("data").getBoolean("from_background") })
        }
    }

    @Test
    fun `bad input names the field and loses nothing beside it`(@TempDir dir: File) {
        Tributary.open(configuration(File(dir, "events.db"))).use { tributary ->
            val good = tributary.track("good")!!
            val empty = assertThrows<TributaryException.InvalidInput> { tributary.track("") }
            assertTrue(empty.reason.startsWith("name"), empty.reason)
            val reserved = assertThrows<TributaryException.InvalidInput> { tributary.track("\$secret") }
            assertTrue(reserved.reason.startsWith("name"), reserved.reason)
            val userId = assertThrows<TributaryException.InvalidInput> { tributary.identify("u".repeat(300)) }
            assertTrue(userId.reason.startsWith("user_id"), userId.reason)
            val alsoGood = tributary.track("also_good")!!
            tributary.flushBlocking()
            val archived = server.waitArchived(listOf(good, alsoGood))
            assertTrue(good in archived && alsoGood in archived)
            assertEquals(2uL, tributary.stats.delivered)
            assertEquals(2uL, tributary.stats.droppedInvalid) // the long user id is refused before the queue
        }
        val bad = assertThrows<TributaryException.InvalidInput> {
            Tributary.open(configuration(File(dir, "x.db"), endpoint = "events.example.com"))
        }
        assertTrue(bad.reason.startsWith("endpoint"), bad.reason)
    }

    @Test
    fun `a refused write key pauses and keeps the events`(@TempDir dir: File) {
        val store = File(dir, "events.db")
        Tributary.open(configuration(store, writeKey = "wrong-key")).use { tributary ->
            val heard = java.util.concurrent.LinkedBlockingQueue<DeliveryEvent>()
            tributary.onDelivery { heard.add(it) }
            tributary.track("kept")
            val error = assertThrows<TributaryException.Network> { tributary.flushBlocking() }
            assertTrue("401" in error.reason, error.reason)
            val paused = heard.poll(10, TimeUnit.SECONDS)
            assertTrue(paused is DeliveryEvent.Paused && paused.status == 401.toUShort(), "$paused")
            assertTrue(tributary.stats.paused)
            assertEquals(1uL, tributary.stats.queued)
        }
        Tributary.open(configuration(store)).use { tributary ->
            assertEquals(1uL, tributary.stats.restored)
        }
    }
}
