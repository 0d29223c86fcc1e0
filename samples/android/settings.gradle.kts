// A minimal Android app using the Tributary Android library (sdk-mobile/kotlin/android), built
// from source: run sdk-mobile/kotlin/android/build-android.sh first.
pluginManagement {
    repositories {
        google()
        mavenCentral()
        gradlePluginPortal()
    }
}
dependencyResolutionManagement {
    repositories {
        google()
        mavenCentral()
    }
}
rootProject.name = "tributary-android-sample"
include(":app")
include(":tributary")
project(":tributary").projectDir = file("../../sdk-mobile/kotlin/android")
