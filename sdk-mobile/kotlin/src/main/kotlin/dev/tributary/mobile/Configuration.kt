package dev.tributary.mobile

import dev.tributary.mobile.ffi.ClientConfig
import java.io.File
import java.time.Duration

/**
 * What an app configures. Only [writeKey], [endpoint] and [storeFile] are required; the rest
 * default to the SDK defaults (flush at 20 events or after 10 s, 10,000 events queued at most).
 *
 * @property writeKey the source's write key.
 * @property endpoint the ingest's base URL; batches go to `{endpoint}/v1/batch`.
 * @property storeFile the SQLite file of the queue (on Android: `File(context.filesDir, "tributary/events.db")`).
 * @property source the envelope's `source`.
 * @property context merged into every event's `context` (app, device, os, locale, timezone, …).
 */
data class Configuration(
    val writeKey: String,
    val endpoint: String,
    val storeFile: File,
    val source: String = "android",
    val context: Map<String, Any?> = PlatformContext.jvm(),
    val flushAt: Int? = null,
    val flushInterval: Duration? = null,
    val capacity: Int? = null,
    val uploadTimeout: Duration? = null,
    /** Compress batches with gzip (default on). */
    val gzip: Boolean? = null,
) {
    /** The record the Rust client takes. */
    fun toFfi(): ClientConfig = ClientConfig(
        writeKey = writeKey,
        endpoint = endpoint,
        storePath = storeFile.path,
        source = source,
        contextJson = Json.encode(context),
        flushAtEvents = flushAt?.toUInt(),
        flushIntervalMillis = flushInterval?.toMillis()?.toULong(),
        capacityEvents = capacity?.toUInt(),
        uploadTimeoutMillis = uploadTimeout?.toMillis()?.toULong(),
        gzip = gzip,
    )
}
