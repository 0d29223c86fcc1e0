plugins {
    id("com.android.application") version "8.7.3"
    id("org.jetbrains.kotlin.android") version "2.2.21"
}

android {
    namespace = "com.example.tributarydemo"
    compileSdk = 35
    defaultConfig {
        applicationId = "com.example.tributarydemo"
        minSdk = 26
        targetSdk = 35
        versionCode = 1
        versionName = "1.0.0"
        // The emulator reaches the host's `tributary serve` (./scripts/demo.sh) at 10.0.2.2.
        buildConfigField("String", "TRIBUTARY_ENDPOINT", "\"http://10.0.2.2:8080\"")
        buildConfigField("String", "TRIBUTARY_WRITE_KEY", "\"dev-write-key\"")
    }
    buildFeatures { buildConfig = true }
}

kotlin {
    jvmToolchain(17)
}

dependencies {
    implementation(project(":tributary"))
}
