package dev.tributary.mobile

import java.util.concurrent.ExecutorService
import java.util.concurrent.Executors
import java.util.concurrent.TimeUnit
import java.util.concurrent.atomic.AtomicBoolean

/**
 * The application lifecycle events (`Application Installed`, `Updated`, `Opened`,
 * `Backgrounded`) and the flush when the app goes to the background. Platform glue calls it: on
 * Android, `dev.tributary.mobile.android.TributaryLifecycleObserver` from `ProcessLifecycleOwner`;
 * tests call it directly.
 *
 * [onBackground] flushes on a background thread and holds nothing on the caller's.
 */
class AppLifecycle(
    private val tributary: Tributary,
    private val version: String,
    private val build: String,
    private val executor: ExecutorService = Executors.newSingleThreadExecutor { task ->
        Thread(task, "tributary-lifecycle").apply { isDaemon = true }
    },
) {
    private val started = AtomicBoolean(false)

    /** The app came to the foreground: the first time as a cold start (Installed/Updated). */
    fun onForeground() {
        val fromBackground = !started.compareAndSet(false, true)
        executor.execute {
            runCatching { tributary.client.recordAppOpened(version, build, fromBackground) }
        }
    }

    /** The app went to the background: `Application Backgrounded`, then everything is sent. */
    fun onBackground() {
        executor.execute {
            runCatching {
                tributary.client.recordAppBackgrounded()
                tributary.flushBlocking()
            }
        }
    }

    /** Waits for the lifecycle work queued so far (tests, shutdown). */
    fun awaitIdle(timeoutMillis: Long = 30_000) {
        executor.submit {}.get(timeoutMillis, TimeUnit.MILLISECONDS)
    }
}
