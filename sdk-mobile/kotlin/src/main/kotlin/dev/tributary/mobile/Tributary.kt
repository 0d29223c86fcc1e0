package dev.tributary.mobile

import dev.tributary.mobile.ffi.ClientStats
import dev.tributary.mobile.ffi.DeliveryEvent
import dev.tributary.mobile.ffi.DeliveryListener
import dev.tributary.mobile.ffi.TributaryClient
import dev.tributary.mobile.ffi.TributaryException
import dev.tributary.mobile.ffi.Uploader
import java.time.Duration

/**
 * A Tributary client for Android and JVM apps: a thin wrapper over the Rust client
 * ([TributaryClient]), which queues events in its SQLite file and sends them in batches on its
 * own threads. Thread-safe: open one per app (per store file) and share it.
 *
 * ```
 * val tributary = Tributary.open(Configuration("WRITE_KEY", "https://events.example.com", File(filesDir, "tributary/events.db")))
 * tributary.track("Order Completed", mapOf("total" to 42.5, "items" to listOf("sku-1")))
 * tributary.identify("user-42", mapOf("plan" to "pro"))
 * ```
 *
 * Calls only validate and queue in memory; they throw [TributaryException.InvalidInput] for an
 * event that breaks a rule (the message names the field) and [TributaryException.Closed] after
 * [close].
 */
class Tributary(
    /** The generated client, for what the wrapper does not cover. */
    val client: TributaryClient,
) : AutoCloseable {
    companion object {
        /**
         * Opens the store (one read: call it off the main thread) and starts the client.
         *
         * @throws TributaryException.InvalidInput for a bad setting, [TributaryException.Storage]
         *   when the store cannot be opened.
         */
        @JvmStatic
        @JvmOverloads
        fun open(configuration: Configuration, uploader: Uploader = HttpUploader()): Tributary =
            Tributary(TributaryClient(configuration.toFfi(), uploader))
    }

    /** Queues an event; returns its id, or null while opted out. */
    @JvmOverloads
    fun track(name: String, properties: Map<String, Any?> = emptyMap()): String? =
        client.track(name, Json.encode(properties))

    /** Queues a `$screen` event for the screen [name]. */
    @JvmOverloads
    fun screen(name: String, properties: Map<String, Any?> = emptyMap()): String? =
        client.screen(name, Json.encode(properties))

    /** Sets the user (when [userId] is given), merges [traits], queues an `$identify` event. */
    @JvmOverloads
    fun identify(userId: String? = null, traits: Map<String, Any?> = emptyMap()): String? =
        client.identify(userId, Json.encode(traits))

    /** Queues a `$group` event. */
    @JvmOverloads
    fun group(groupId: String, traits: Map<String, Any?> = emptyMap()): String? =
        client.group(groupId, Json.encode(traits))

    /** Queues an `$alias` event; [userId] becomes the user id of later events. */
    fun alias(userId: String): String? = client.alias(userId)

    /** Asks for everything queued to be sent now; returns at once. */
    fun flush() = client.flush()

    /**
     * Sends everything queued and waits for delivery. Blocks: never on the main thread.
     *
     * @throws TributaryException.Network when an upload failed (the events stay queued),
     *   [TributaryException.Timeout].
     */
    @JvmOverloads
    fun flushBlocking(timeout: Duration = Duration.ofSeconds(30)) =
        client.flushBlocking(timeout.toMillis().toULong())

    /** Waits until every event tracked so far is in the store. Blocks. */
    @JvmOverloads
    fun waitUntilStored(timeout: Duration = Duration.ofSeconds(10)) =
        client.waitUntilStored(timeout.toMillis().toULong())

    /** Forgets the user (logout): a new anonymous id, no user id, no traits. */
    fun reset() = client.reset()

    /** While true, events are ignored; persisted. */
    var optedOut: Boolean
        get() = client.isOptedOut()
        set(value) = client.setOptedOut(value)

    /** The install's anonymous id. */
    val anonymousId: String get() = client.anonymousId()

    /** The user id set by [identify] or [alias]. */
    val userId: String? get() = client.userId()

    /** Merges [context] into the context of later events (a changed network, locale, …). */
    fun updateContext(context: Map<String, Any?>) = client.updateContext(Json.encode(context))

    /** What the client has done since it was opened. */
    val stats: ClientStats get() = client.stats()

    /**
     * Hears every delivery, drop, eviction, retry and pause from now on (null stops), on the
     * client's thread: return quickly, hand real work to your own thread.
     */
    fun onDelivery(listener: ((DeliveryEvent) -> Unit)?) {
        client.setListener(listener?.let { handler ->
            object : DeliveryListener {
                override fun onEvent(event: DeliveryEvent) = handler(event)
            }
        })
    }

    /** Writes what is pending and stops; undelivered events stay for the next start. */
    override fun close() {
        client.shutdown()
        client.destroy()
    }
}
