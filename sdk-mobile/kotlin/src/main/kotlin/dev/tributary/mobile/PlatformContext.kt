package dev.tributary.mobile

import java.util.Locale
import java.util.TimeZone

/**
 * The `context` an app's events carry. On Android, `dev.tributary.mobile.android.AndroidContext`
 * fills it from the platform (app name/version/build, device, OS, locale, timezone, network);
 * on a plain JVM (tests, desktop) [jvm] gives what the JVM knows.
 */
object PlatformContext {
    /** The library, OS, locale and timezone of this JVM. */
    @JvmStatic
    fun jvm(): Map<String, Any?> = mapOf(
        "library" to mapOf("name" to "tributary-kotlin", "version" to VERSION),
        "os" to mapOf("name" to System.getProperty("os.name"), "version" to System.getProperty("os.version")),
        "locale" to Locale.getDefault().toLanguageTag(),
        "timezone" to TimeZone.getDefault().id,
    )

    /** This wrapper's version. */
    const val VERSION = "0.1.0"
}
