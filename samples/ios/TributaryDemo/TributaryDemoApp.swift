// A minimal SwiftUI app using the Tributary Swift package (sdk-mobile/swift): add the package
// as a local dependency in Xcode (File > Add Package Dependencies > Add Local…), after
// sdk-mobile/swift/build-xcframework.sh made TributaryMobileFFI.xcframework.
import SwiftUI
import Tributary

@main
struct TributaryDemoApp: App {
    @StateObject private var analytics = Analytics()

    var body: some Scene {
        WindowGroup {
            ContentView().environmentObject(analytics)
        }
    }
}

/// Opens the client off the main thread (it reads its store once) and shares it.
final class Analytics: ObservableObject {
    @Published private(set) var tributary: Tributary?

    init() {
        // The simulator reaches the Mac's `tributary serve` (./scripts/demo.sh) at 127.0.0.1.
        let configuration = TributaryConfiguration(
            writeKey: "dev-write-key",
            endpoint: URL(string: "http://127.0.0.1:8080")!
        )
        DispatchQueue.global(qos: .utility).async {
            let client = try? Tributary(configuration: configuration)
            DispatchQueue.main.async { self.tributary = client }
        }
    }
}
