// The Swift wrapper over the generated bindings (TributaryMobile.swift): JSON dictionaries in,
// Swift errors out, the iOS lifecycle wired in. Not compiled on the Linux CI (see README).
import Foundation

/// Why a call failed. Every case but `invalidInput` leaves tracked events safe in the queue.
public enum TributaryFailure: Error, Equatable {
    /// An argument breaks a rule; the text names the field.
    case invalidInput(String)
    /// The store could not be read or written.
    case storage(String)
    /// An upload failed; the events stay queued and are retried.
    case network(String)
    /// A blocking call gave up waiting; the events stay queued.
    case timeout
    /// The client was shut down.
    case closed

    init(_ error: Error) {
        switch error {
        case TributaryError.InvalidInput(let reason): self = .invalidInput(reason)
        case TributaryError.Storage(let reason): self = .storage(reason)
        case TributaryError.Network(let reason): self = .network(reason)
        case TributaryError.Timeout: self = .timeout
        case TributaryError.Closed: self = .closed
        default: self = .invalidInput(String(describing: error))
        }
    }
}

/// What an app configures. Only the write key and the endpoint are required.
public struct TributaryConfiguration {
    public var writeKey: String
    public var endpoint: URL
    /// The SQLite file of the queue; default `Application Support/tributary/events.db`.
    public var storeURL: URL
    public var flushAt: UInt32?
    public var flushInterval: TimeInterval?
    /// Track Application Installed/Updated/Opened/Backgrounded and flush in the background.
    public var trackLifecycleEvents: Bool
    /// Merged into every event's context, over the platform's.
    public var context: [String: Any]

    public init(writeKey: String, endpoint: URL, storeURL: URL? = nil, trackLifecycleEvents: Bool = true) {
        self.writeKey = writeKey
        self.endpoint = endpoint
        self.storeURL = storeURL ?? TributaryConfiguration.defaultStoreURL()
        self.flushAt = nil
        self.flushInterval = nil
        self.trackLifecycleEvents = trackLifecycleEvents
        self.context = [:]
    }

    static func defaultStoreURL() -> URL {
        let support = FileManager.default.urls(for: .applicationSupportDirectory, in: .userDomainMask).first
            ?? URL(fileURLWithPath: NSTemporaryDirectory())
        return support.appendingPathComponent("tributary", isDirectory: true).appendingPathComponent("events.db")
    }

    func ffi() throws -> ClientConfig {
        var context = PlatformContext.current()
        for (key, value) in self.context { context[key] = value }
        return ClientConfig(
            writeKey: writeKey,
            endpoint: endpoint.absoluteString,
            storePath: storeURL.path,
            source: "ios",
            contextJson: try JSONText.encode(context),
            flushAtEvents: flushAt,
            flushIntervalMillis: flushInterval.map { UInt64($0 * 1000) },
            capacityEvents: nil,
            uploadTimeoutMillis: nil,
            gzip: nil
        )
    }
}

/// A Tributary client for iOS and macOS apps. Thread-safe: create one and share it. Calls only
/// validate and queue; the store and the network are used on the client's own threads.
public final class Tributary {
    /// The generated client, for what the wrapper does not cover.
    public let client: TributaryClient
    private var lifecycle: AppLifecycle?
    /// The NetworkObserver where the Network framework exists.
    private var network: AnyObject?

    /// Opens the store (one read: create it off the main thread) and starts the client.
    public init(configuration: TributaryConfiguration, uploader: Uploader = URLSessionUploader()) throws {
        do {
            client = try TributaryClient(config: try configuration.ffi(), uploader: uploader)
        } catch {
            throw TributaryFailure(error)
        }
        #if canImport(Network)
        network = NetworkObserver(client: client)
        #endif
        if configuration.trackLifecycleEvents {
            lifecycle = AppLifecycle(tributary: self)
        }
    }

    deinit {
        client.shutdown()
    }

    /// Queues an event; returns its id, or nil while opted out.
    @discardableResult
    public func track(_ name: String, properties: [String: Any] = [:]) throws -> String? {
        try call { try client.track(name: name, propertiesJson: try JSONText.encode(properties)) }
    }

    /// Queues a `$screen` event.
    @discardableResult
    public func screen(_ name: String, properties: [String: Any] = [:]) throws -> String? {
        try call { try client.screen(name: name, propertiesJson: try JSONText.encode(properties)) }
    }

    /// Sets the user (when given), merges the traits, queues an `$identify` event.
    @discardableResult
    public func identify(userId: String? = nil, traits: [String: Any] = [:]) throws -> String? {
        try call { try client.identify(userId: userId, traitsJson: try JSONText.encode(traits)) }
    }

    /// Queues a `$group` event.
    @discardableResult
    public func group(_ groupId: String, traits: [String: Any] = [:]) throws -> String? {
        try call { try client.group(groupId: groupId, traitsJson: try JSONText.encode(traits)) }
    }

    /// Queues an `$alias` event; `userId` becomes the user id of later events.
    @discardableResult
    public func alias(_ userId: String) throws -> String? {
        try call { try client.alias(userId: userId) }
    }

    /// Asks for everything queued to be sent now; returns at once.
    public func flush() {
        client.flush()
    }

    /// Sends everything queued and waits for delivery. Blocks: never on the main thread.
    public func flushBlocking(timeout: TimeInterval = 30) throws {
        try call { try client.flushBlocking(timeoutMillis: UInt64(timeout * 1000)) }
    }

    /// Forgets the user (logout): a new anonymous id, no user id, no traits.
    public func reset() {
        client.reset()
    }

    /// While true, events are ignored; persisted.
    public var optedOut: Bool {
        get { client.isOptedOut() }
        set { client.setOptedOut(optedOut: newValue) }
    }

    public var anonymousId: String { client.anonymousId() }
    public var userId: String? { client.userId() }
    public var stats: ClientStats { client.stats() }

    /// Hears every delivery, drop, eviction, retry and pause from now on (nil stops), on the
    /// client's thread: return quickly.
    public func onDelivery(_ handler: ((DeliveryEvent) -> Void)?) {
        client.setListener(listener: handler.map { ClosureListener(handler: $0) })
    }

    /// Merges values into the context of later events (a changed network, locale, …).
    public func updateContext(_ context: [String: Any]) throws {
        try call { try client.updateContext(contextJson: try JSONText.encode(context)) }
    }

    private func call<T>(_ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let failure as TributaryFailure {
            throw failure
        } catch {
            throw TributaryFailure(error)
        }
    }
}

/// Adapts a closure to the generated listener protocol.
final class ClosureListener: DeliveryListener, @unchecked Sendable {
    private let handler: (DeliveryEvent) -> Void

    init(handler: @escaping (DeliveryEvent) -> Void) {
        self.handler = handler
    }

    func onEvent(event: DeliveryEvent) {
        handler(event)
    }
}

/// Properties, traits and context cross the FFI as JSON objects.
enum JSONText {
    static func encode(_ object: [String: Any]) throws -> String {
        if object.isEmpty { return "{}" }
        let value = sanitize(object)
        let data = try JSONSerialization.data(withJSONObject: value, options: [.sortedKeys])
        return String(decoding: data, as: UTF8.self)
    }

    /// Values JSONSerialization cannot write become strings (dates in ISO 8601).
    static func sanitize(_ value: Any) -> Any {
        switch value {
        case let dictionary as [String: Any]:
            return dictionary.mapValues { sanitize($0) }
        case let array as [Any]:
            return array.map { sanitize($0) }
        case let date as Date:
            return ISO8601DateFormatter().string(from: date)
        case let url as URL:
            return url.absoluteString
        case let number as Double where !number.isFinite:
            return String(number)
        case is String, is NSNumber, is NSNull, is Bool, is Int, is Double:
            return value
        default:
            return String(describing: value)
        }
    }
}
