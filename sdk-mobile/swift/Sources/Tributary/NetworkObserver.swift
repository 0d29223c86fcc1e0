// Keeps `context.network` current (connected, wifi, cellular) with NWPathMonitor.
import Foundation
#if canImport(Network)
import Network

final class NetworkObserver {
    private let monitor = NWPathMonitor()

    init(client: TributaryClient) {
        monitor.pathUpdateHandler = { [weak client] path in
            let network: [String: Any] = [
                "connected": path.status == .satisfied,
                "wifi": path.usesInterfaceType(.wifi),
                "cellular": path.usesInterfaceType(.cellular),
            ]
            if let json = try? JSONText.encode(["network": network]) {
                try? client?.updateContext(contextJson: json)
            }
        }
        monitor.start(queue: DispatchQueue(label: "dev.tributary.network"))
    }

    deinit {
        monitor.cancel()
    }
}
#endif
