package dev.tributary.mobile

import dev.tributary.mobile.ffi.UploadException
import dev.tributary.mobile.ffi.UploadRequest
import dev.tributary.mobile.ffi.UploadResponse
import dev.tributary.mobile.ffi.Uploader
import java.io.IOException
import java.io.InputStream
import java.net.HttpURLConnection
import java.net.SocketTimeoutException
import java.net.URL

/**
 * Sends batches with `HttpURLConnection` (the JDK's and Android's; the platform's TLS trust,
 * proxies and network security config apply). Called on the client's upload thread, never on
 * the app's. An app using OkHttp implements [Uploader] with it the same way.
 */
class HttpUploader : Uploader {
    override fun upload(request: UploadRequest): UploadResponse {
        val timeout = request.timeoutMillis.toLong().coerceIn(1, Int.MAX_VALUE.toLong()).toInt()
        try {
            val connection = URL(request.url).openConnection() as HttpURLConnection
            try {
                connection.requestMethod = "POST"
                connection.doOutput = true
                connection.connectTimeout = timeout
                connection.readTimeout = timeout
                connection.instanceFollowRedirects = false
                connection.setFixedLengthStreamingMode(request.body.size)
                for ((name, value) in request.headers) connection.setRequestProperty(name, value)
                connection.outputStream.use { it.write(request.body) }
                val status = connection.responseCode
                val stream: InputStream? = if (status >= 400) connection.errorStream else connection.inputStream
                val body = stream?.use { readLimited(it) } ?: ByteArray(0)
                return UploadResponse(
                    status = status.toUShort(),
                    retryAfter = connection.getHeaderField("Retry-After"),
                    body = body,
                )
            } finally {
                connection.disconnect()
            }
        } catch (error: SocketTimeoutException) {
            throw UploadException.TimedOut()
        } catch (error: IOException) {
            throw UploadException.ConnectionFailed("${error.javaClass.simpleName}: ${error.message}")
        }
    }

    /** Reads at most [MAX_RESPONSE_BYTES] (no `readNBytes`: Android has it only from API 33). */
    private fun readLimited(stream: InputStream): ByteArray {
        val out = java.io.ByteArrayOutputStream()
        val buffer = ByteArray(8192)
        while (out.size() < MAX_RESPONSE_BYTES) {
            val read = stream.read(buffer, 0, minOf(buffer.size, MAX_RESPONSE_BYTES - out.size()))
            if (read < 0) break
            out.write(buffer, 0, read)
        }
        return out.toByteArray()
    }

    private companion object {
        /** Enough for the `rejected` list of a 500-event batch. */
        const val MAX_RESPONSE_BYTES = 256 * 1024
    }
}
