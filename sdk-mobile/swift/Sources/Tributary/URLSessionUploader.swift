// Sends batches with URLSession: the platform's TLS trust, proxies and App Transport Security
// apply. Called on the client's upload thread, never on the app's.
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

public final class URLSessionUploader: Uploader, @unchecked Sendable {
    private let session: URLSession

    public init(session: URLSession = URLSession(configuration: .ephemeral)) {
        self.session = session
    }

    public func upload(request: UploadRequest) throws -> UploadResponse {
        guard let url = URL(string: request.url) else {
            throw UploadError.ConnectionFailed(reason: "not a URL")
        }
        var urlRequest = URLRequest(url: url, timeoutInterval: TimeInterval(request.timeoutMillis) / 1000)
        urlRequest.httpMethod = "POST"
        urlRequest.httpBody = request.body
        for (name, value) in request.headers {
            urlRequest.setValue(value, forHTTPHeaderField: name)
        }
        let done = DispatchSemaphore(value: 0)
        var outcome: Result<UploadResponse, UploadError> = .failure(.TimedOut)
        let task = session.dataTask(with: urlRequest) { data, response, error in
            if let error = error as? URLError, error.code == .timedOut {
                outcome = .failure(.TimedOut)
            } else if let error = error {
                outcome = .failure(.ConnectionFailed(reason: error.localizedDescription))
            } else if let http = response as? HTTPURLResponse {
                outcome = .success(UploadResponse(
                    status: UInt16(clamping: http.statusCode),
                    retryAfter: http.value(forHTTPHeaderField: "Retry-After"),
                    body: data ?? Data()
                ))
            } else {
                outcome = .failure(.ConnectionFailed(reason: "not an HTTP response"))
            }
            done.signal()
        }
        task.resume()
        done.wait()
        return try outcome.get()
    }
}
