package dev.tributary.mobile

import org.json.JSONObject
import java.io.File
import java.nio.file.Files
import java.util.concurrent.TimeUnit

/**
 * `tributary serve` with its built-in rules on 127.0.0.1 (a free port), data in a temp folder.
 * The binary: TRIBUTARY_BIN, else the workspace's debug build in CARGO_TARGET_DIR.
 */
class TestServer : AutoCloseable {
    val dir: File = Files.createTempDirectory("tributary-kotlin-serve-").toFile()
    private val out = File(dir, "serve.out")
    private val process: Process
    val endpoint: String

    init {
        val binary = System.getenv("TRIBUTARY_BIN")
            ?: File(
                System.getenv("CARGO_TARGET_DIR") ?: "${System.getProperty("user.home")}/.cache/tributary-target",
                "debug/tributary",
            ).path
        check(File(binary).canExecute()) {
            "no tributary binary at $binary: build it (cargo build -p tributary-backend --bin tributary) or set TRIBUTARY_BIN"
        }
        process = ProcessBuilder(binary, "serve", "--listen", "127.0.0.1:0")
            .directory(dir)
            .redirectOutput(out)
            .redirectError(File(dir, "serve.log"))
            .start()
        val deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30)
        var address: String? = null
        while (address == null && System.nanoTime() < deadline) {
            address = out.takeIf { it.exists() }?.readLines()
                ?.firstOrNull { it.startsWith("tributary: listening on http://") }
                ?.substringAfter("http://")?.trim()
            check(process.isAlive || address != null) { "tributary serve exited: ${File(dir, "serve.log").readText()}" }
            if (address == null) Thread.sleep(50)
        }
        endpoint = "http://" + (address ?: error("tributary serve did not start within 30 s"))
    }

    /** The events the `archive` destination received (every event), by id. */
    fun archived(): Map<String, List<JSONObject>> {
        val file = File(dir, "tributary-data/archive.jsonl")
        if (!file.exists()) return emptyMap()
        return file.readLines().filter { it.isNotBlank() }.map { JSONObject(it) }.groupBy { it.getString("id") }
    }

    /** Waits until every id is archived; returns the archive. */
    fun waitArchived(ids: Collection<String>, timeoutMillis: Long = 30_000): Map<String, List<JSONObject>> {
        val deadline = System.currentTimeMillis() + timeoutMillis
        while (true) {
            val events = archived()
            if (ids.all { it in events } || System.currentTimeMillis() > deadline) return events
            Thread.sleep(100)
        }
    }

    override fun close() {
        process.destroy()
        process.waitFor(20, TimeUnit.SECONDS)
        dir.deleteRecursively()
    }
}
