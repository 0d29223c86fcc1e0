// The context every event carries: app, device, OS, locale, timezone, library.
import Foundation
#if canImport(UIKit)
import UIKit
#endif

enum PlatformContext {
    static func current() -> [String: Any] {
        let info = Bundle.main.infoDictionary ?? [:]
        var context: [String: Any] = [
            "library": ["name": "tributary-swift", "version": "0.1.0"],
            "app": [
                "name": info["CFBundleName"] as? String ?? "",
                "namespace": Bundle.main.bundleIdentifier ?? "",
                "version": info["CFBundleShortVersionString"] as? String ?? "",
                "build": info["CFBundleVersion"] as? String ?? "",
            ],
            "device": ["manufacturer": "Apple", "model": deviceModel()],
            "locale": Locale.current.identifier,
            "timezone": TimeZone.current.identifier,
        ]
        #if canImport(UIKit) && !os(watchOS)
        context["os"] = ["name": UIDevice.current.systemName, "version": UIDevice.current.systemVersion]
        #else
        context["os"] = ["name": "macOS", "version": ProcessInfo.processInfo.operatingSystemVersionString]
        #endif
        return context
    }

    /// The hardware model, such as `iPhone15,2`.
    static func deviceModel() -> String {
        var system = utsname()
        uname(&system)
        let machine = withUnsafeBytes(of: &system.machine) { bytes in
            String(decoding: bytes.prefix(while: { $0 != 0 }), as: UTF8.self)
        }
        return machine
    }

    static var appVersion: String {
        Bundle.main.infoDictionary?["CFBundleShortVersionString"] as? String ?? ""
    }

    static var appBuild: String {
        Bundle.main.infoDictionary?["CFBundleVersion"] as? String ?? ""
    }
}
