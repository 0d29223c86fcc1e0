// Runs on macOS with `swift test` after build-xcframework.sh (not on the Linux CI).
import XCTest
@testable import Tributary

final class RecordingUploader: Uploader, @unchecked Sendable {
    private let lock = NSLock()
    private(set) var bodies: [Data] = []

    func upload(request: UploadRequest) throws -> UploadResponse {
        lock.lock()
        bodies.append(request.body)
        lock.unlock()
        let count = (try? JSONSerialization.jsonObject(with: request.body) as? [String: Any])
            .flatMap { $0?["batch"] as? [Any] }?.count ?? 0
        return UploadResponse(status: 200, retryAfter: nil, body: Data("{\"accepted\":\(count),\"rejected\":[]}".utf8))
    }
}

final class TributaryTests: XCTestCase {
    func testTracksAndDeliversThroughTheUploader() throws {
        let store = FileManager.default.temporaryDirectory
            .appendingPathComponent(UUID().uuidString).appendingPathComponent("events.db")
        var configuration = TributaryConfiguration(
            writeKey: "dev-write-key", endpoint: URL(string: "http://127.0.0.1:9")!, storeURL: store,
            trackLifecycleEvents: false)
        configuration.context = ["app": ["name": "swift-tests"]]
        let uploader = RecordingUploader()
        let tributary = try Tributary(configuration: configuration, uploader: uploader)
        let id = try tributary.track("Order Completed", properties: ["total": 42.5, "at": Date()])
        XCTAssertNotNil(id)
        try tributary.identify(userId: "user-42", traits: ["plan": "pro"])
        try tributary.flushBlocking(timeout: 10)
        XCTAssertEqual(tributary.stats.delivered, 2)
        XCTAssertFalse(uploader.bodies.isEmpty)
        XCTAssertThrowsError(try tributary.track("")) { error in
            guard case TributaryFailure.invalidInput(let reason) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(reason.hasPrefix("name"))
        }
    }
}
