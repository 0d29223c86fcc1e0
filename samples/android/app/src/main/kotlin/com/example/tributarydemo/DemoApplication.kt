package com.example.tributarydemo

import android.app.Application
import dev.tributary.mobile.Tributary
import dev.tributary.mobile.android.TributaryAndroid

/** Sets Tributary up once per process; the client opens on a background thread. */
class DemoApplication : Application() {
    @Volatile
    var tributary: Tributary? = null
        private set

    override fun onCreate() {
        super.onCreate()
        TributaryAndroid.setup(this, BuildConfig.TRIBUTARY_WRITE_KEY, BuildConfig.TRIBUTARY_ENDPOINT) { client ->
            tributary = client
        }
    }
}
