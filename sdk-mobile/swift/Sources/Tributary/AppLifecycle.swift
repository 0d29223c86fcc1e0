// The application lifecycle: Application Installed/Updated/Opened at launch and on return to the
// foreground, Application Backgrounded and a flush inside an iOS background task when the app
// leaves it (so the events are sent before the app is suspended).
import Foundation
#if canImport(UIKit) && !os(watchOS)
import UIKit
#endif

final class AppLifecycle {
    private weak var tributary: Tributary?
    private var observers: [NSObjectProtocol] = []
    private let queue = DispatchQueue(label: "dev.tributary.lifecycle")

    init(tributary: Tributary) {
        self.tributary = tributary
        let client = tributary.client
        queue.async {
            try? client.recordAppOpened(
                version: PlatformContext.appVersion, build: PlatformContext.appBuild, fromBackground: false)
        }
        #if canImport(UIKit) && !os(watchOS)
        let center = NotificationCenter.default
        observers.append(center.addObserver(
            forName: UIApplication.willEnterForegroundNotification, object: nil, queue: nil
        ) { [weak self] _ in self?.foreground() })
        observers.append(center.addObserver(
            forName: UIApplication.didEnterBackgroundNotification, object: nil, queue: nil
        ) { [weak self] _ in self?.background() })
        #endif
    }

    deinit {
        observers.forEach(NotificationCenter.default.removeObserver)
    }

    private func foreground() {
        guard let client = tributary?.client else { return }
        queue.async {
            try? client.recordAppOpened(
                version: PlatformContext.appVersion, build: PlatformContext.appBuild, fromBackground: true)
        }
    }

    private func background() {
        guard let client = tributary?.client else { return }
        #if canImport(UIKit) && !os(watchOS)
        var task = UIBackgroundTaskIdentifier.invalid
        task = UIApplication.shared.beginBackgroundTask(withName: "tributary-flush") {
            UIApplication.shared.endBackgroundTask(task)
            task = .invalid
        }
        queue.async {
            try? client.recordAppBackgrounded()
            // iOS grants about 30 s; stop before it, the rest stays queued for the next launch.
            try? client.flushBlocking(timeoutMillis: 25_000)
            DispatchQueue.main.async {
                if task != .invalid {
                    UIApplication.shared.endBackgroundTask(task)
                    task = .invalid
                }
            }
        }
        #else
        queue.async { try? client.recordAppBackgrounded() }
        #endif
    }
}
