// The Android library: the shared wrapper (../src/main/kotlin), the generated bindings of the
// release API (generated/src, from build-android.sh), the Android glue (src/main/kotlin) and
// libtributary_mobile.so per ABI (src/main/jniLibs/<abi>/, from cargo-ndk).
plugins {
    id("com.android.library") version "8.7.3"
    id("org.jetbrains.kotlin.android") version "2.2.21"
}

android {
    namespace = "dev.tributary.mobile"
    compileSdk = 35
    defaultConfig {
        // java.time (Configuration's durations) without desugaring.
        minSdk = 26
        consumerProguardFiles("consumer-rules.pro")
    }
    sourceSets["main"].apply {
        kotlin.srcDirs("../src/main/kotlin", "generated/src", "src/main/kotlin")
        jniLibs.srcDirs("src/main/jniLibs")
    }
    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }
}

kotlin {
    jvmToolchain(17)
}

dependencies {
    // JNA's Android build carries its own libjnidispatch.so per ABI.
    implementation("net.java.dev.jna:jna:5.17.0@aar")
    implementation("androidx.lifecycle:lifecycle-process:2.8.7")
    // org.json is part of Android: the JVM build's dependency is left out here.
}
