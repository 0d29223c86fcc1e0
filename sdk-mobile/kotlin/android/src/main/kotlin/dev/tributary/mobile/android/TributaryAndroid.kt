package dev.tributary.mobile.android

import android.content.Context
import android.content.pm.PackageManager
import android.net.ConnectivityManager
import android.net.Network
import android.net.NetworkCapabilities
import android.os.Build
import androidx.lifecycle.DefaultLifecycleObserver
import androidx.lifecycle.LifecycleOwner
import androidx.lifecycle.ProcessLifecycleOwner
import dev.tributary.mobile.AppLifecycle
import dev.tributary.mobile.Configuration
import dev.tributary.mobile.PlatformContext
import dev.tributary.mobile.Tributary
import java.io.File
import java.util.Locale
import java.util.TimeZone
import java.util.concurrent.Executors

/**
 * Android setup: the store under the app's files, the platform context, the lifecycle events and
 * the flush when the app goes to the background. Built into the AAR only (needs the Android SDK).
 */
object TributaryAndroid {
    /**
     * Opens the client on a background thread and hands it to [ready] there (the store is read
     * once at open, never on the main thread).
     */
    @JvmStatic
    fun setup(context: Context, writeKey: String, endpoint: String, ready: (Tributary) -> Unit = {}) {
        val app = context.applicationContext
        Executors.newSingleThreadExecutor().execute {
            val tributary = Tributary.open(
                Configuration(
                    writeKey = writeKey,
                    endpoint = endpoint,
                    storeFile = File(app.filesDir, "tributary/events.db"),
                    source = "android",
                    context = AndroidContext.collect(app),
                ),
            )
            AndroidContext.watchNetwork(app, tributary)
            val (version, build) = AndroidContext.versionAndBuild(app)
            val lifecycle = AppLifecycle(tributary, version, build)
            android.os.Handler(android.os.Looper.getMainLooper()).post {
                ProcessLifecycleOwner.get().lifecycle.addObserver(TributaryLifecycleObserver(lifecycle))
            }
            ready(tributary)
        }
    }
}

/** Forwards the process's start/stop to [AppLifecycle] (Opened, Backgrounded + flush). */
class TributaryLifecycleObserver(private val lifecycle: AppLifecycle) : DefaultLifecycleObserver {
    override fun onStart(owner: LifecycleOwner) = lifecycle.onForeground()
    override fun onStop(owner: LifecycleOwner) = lifecycle.onBackground()
}

/** The context of an Android app's events. */
object AndroidContext {
    fun versionAndBuild(context: Context): Pair<String, String> = try {
        val info = context.packageManager.getPackageInfo(context.packageName, 0)
        val build = if (Build.VERSION.SDK_INT >= 28) info.longVersionCode else @Suppress("DEPRECATION") info.versionCode.toLong()
        (info.versionName ?: "") to build.toString()
    } catch (error: PackageManager.NameNotFoundException) {
        "" to ""
    }

    fun collect(context: Context): Map<String, Any?> {
        val (version, build) = versionAndBuild(context)
        return mapOf(
            "library" to mapOf("name" to "tributary-android", "version" to PlatformContext.VERSION),
            "app" to mapOf(
                "name" to context.applicationInfo.loadLabel(context.packageManager).toString(),
                "namespace" to context.packageName,
                "version" to version,
                "build" to build,
            ),
            "device" to mapOf("manufacturer" to Build.MANUFACTURER, "model" to Build.MODEL),
            "os" to mapOf("name" to "Android", "version" to Build.VERSION.RELEASE),
            "locale" to Locale.getDefault().toLanguageTag(),
            "timezone" to TimeZone.getDefault().id,
            "network" to network(context),
        )
    }

    private fun network(context: Context): Map<String, Any?> {
        val manager = context.getSystemService(ConnectivityManager::class.java) ?: return emptyMap()
        return describe(manager.getNetworkCapabilities(manager.activeNetwork))
    }

    private fun describe(capabilities: NetworkCapabilities?): Map<String, Any?> =
        if (capabilities == null) {
            mapOf("connected" to false, "wifi" to false, "cellular" to false)
        } else {
            mapOf(
                "connected" to true,
                "wifi" to capabilities.hasTransport(NetworkCapabilities.TRANSPORT_WIFI),
                "cellular" to capabilities.hasTransport(NetworkCapabilities.TRANSPORT_CELLULAR),
            )
        }

    /** Keeps `context.network` current as the default network changes. */
    fun watchNetwork(context: Context, tributary: Tributary) {
        val manager = context.getSystemService(ConnectivityManager::class.java) ?: return
        manager.registerDefaultNetworkCallback(object : ConnectivityManager.NetworkCallback() {
            override fun onCapabilitiesChanged(network: Network, capabilities: NetworkCapabilities) {
                runCatching { tributary.updateContext(mapOf("network" to describe(capabilities))) }
            }

            override fun onLost(network: Network) {
                runCatching { tributary.updateContext(mapOf("network" to describe(null))) }
            }
        })
    }
}
